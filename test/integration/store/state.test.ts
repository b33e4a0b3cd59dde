// state.json updates with real files and processes: concurrent updates in one process, and another process
// holding the state lock (the daemon and a `kata-sysextd --once` write the same file).
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, assert, beforeEach, describe, expect, it } from "vitest";
import type { Clock } from "../../../src/clock.ts";
import { KataError } from "../../../src/errors.ts";
import { run } from "../../../src/exec.ts";
import { createLogger, type Fields, type Level, MessageId } from "../../../src/log/logger.ts";
import {
  backupOf,
  clearNextBoot,
  EMPTY_STATE,
  readState,
  releaseHolds,
  stateDamage,
  sweepState,
  updateState,
} from "../../../src/store/state.ts";
import { holdLock } from "../../helpers/lock-holder.ts";

let dir: string;
let file: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "kata-state-"));
  file = join(dir, "state.json");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const onDisk = () => JSON.parse(readFileSync(file, "utf8"));

describe("state.json updates", () => {
  it("concurrent updates of different fields in one process all land", async () => {
    await Promise.all([
      updateState(file, () => ({ heldUnder: "digest" })),
      updateState(file, () => ({ lastSwitch: ["kata-containers"] })),
    ]);
    expect(onDisk()).toMatchObject({ heldUnder: "digest", lastSwitch: ["kata-containers"] });
  });

  it("clearNextBoot and releaseHolds keep a concurrent update, and write nothing when there is nothing to do", async () => {
    const next = {
      flatcarVersion: "4230.2.0",
      files: { "kata-containers": "kata-containers-3.30.0-x86-64.raw" },
      staged: true,
      reason: null,
      stagedOn: "4152.2.0",
      skipped: {},
    };
    await updateState(file, () => ({ nextBoot: next, held: { "kata-containers": ["x.raw"] }, heldUnder: "d" }));
    await Promise.all([
      clearNextBoot(file),
      releaseHolds(file),
      updateState(file, () => ({ lastSwitch: ["kata-containers"] })),
    ]);
    expect(onDisk()).toMatchObject({ nextBoot: null, held: {}, heldUnder: null, lastSwitch: ["kata-containers"] });
    const other = join(dir, "other", "state.json");
    await clearNextBoot(other);
    await releaseHolds(other);
    expect(existsSync(other)).toBe(false);
  });

  it("an update to what the file holds already writes nothing, and does not wait for the lock", async () => {
    await updateState(file, () => ({ heldUnder: "kept", waitingSince: null }));
    const before = statSync(file);
    const other = await holdLock(`${file}.lock`);
    try {
      const state = await updateState(file, () => ({ waitingSince: null, heldUnder: "kept" }), { lockWaitMs: 300 });
      expect(state).toMatchObject({ heldUnder: "kept", waitingSince: null });
      expect(statSync(file)).toMatchObject({ ino: before.ino, mtimeMs: before.mtimeMs });
      // A real change still waits for the holder.
      await expect(updateState(file, () => ({ heldUnder: "other" }), { lockWaitMs: 300 })).rejects.toThrow(
        /is locked by another process/,
      );
    } finally {
      await other.kill();
    }
    expect((await updateState(file, () => ({ heldUnder: "other" }))).heldUnder).toBe("other");
  });

  it("waits while another process holds the state lock, and writes once it lets go", async () => {
    await updateState(file, () => ({ heldUnder: "before" }));
    const other = await holdLock(`${file}.lock`);
    try {
      let settled = false;
      const update = updateState(file, () => ({ lastSwitch: ["kata-containers"] })).finally(() => (settled = true));
      await sleep(500);
      expect(settled).toBe(false);
      expect(onDisk().lastSwitch).toBeNull();
      await other.kill();
      expect((await update).lastSwitch).toEqual(["kata-containers"]);
      expect(onDisk()).toMatchObject({ heldUnder: "before", lastSwitch: ["kata-containers"] });
    } finally {
      await other.kill();
    }
  });

  it("gives up after the wait with an error that names the holder, and the next update still runs", async () => {
    await updateState(file, () => ({ heldUnder: "before" }));
    const other = await holdLock(`${file}.lock`);
    try {
      const started = Date.now();
      const error = await updateState(file, () => ({ heldUnder: "after" }), { lockWaitMs: 300 }).then(
        () => null,
        (e: unknown) => e,
      );
      const waited = Date.now() - started;
      assert(error instanceof KataError, `expected a KataError, got ${String(error)}`);
      expect(error).toMatchObject({
        code: "store-failed",
        message: `the state file ${file} is locked by another process (pid ${other.pid}) for more than 0.3 s`,
      });
      expect(error.remedy).toContain(`find what holds ${file}.lock with \`lslocks\``);
      expect(waited).toBeGreaterThanOrEqual(290);
      expect(waited).toBeLessThan(5000);
      expect(onDisk().heldUnder).toBe("before");
    } finally {
      await other.kill();
    }
    expect((await updateState(file, () => ({ heldUnder: "after" }))).heldUnder).toBe("after");
  });
});

const IMAGE = "kata-containers-3.32.0-x86-64.raw";
const OLD = "kata-containers-3.31.0-x86-64.raw";

/** A logger that keeps what it is told, and a clock fixed at one instant. */
function journal() {
  const records: { level: Level; message: string; fields: Fields }[] = [];
  const log = createLogger((level, message, fields) => records.push({ level, message, fields }), "debug");
  const clock: Clock = {
    now: () => new Date("2026-12-02T07:45:00.123Z"),
    monotonicMs: () => 0,
    sleep: async () => {},
  };
  const ids = () => records.map((r) => r.fields.MESSAGE_ID).filter((id) => id !== undefined);
  return { records, log, clock, ids };
}

describe("a damaged state.json", () => {
  it("writes the state being replaced to state.json.bak before each replace", async () => {
    await updateState(file, () => ({ previous: { "kata-containers": OLD } }));
    await updateState(file, () => ({ previous: { "kata-containers": IMAGE } }));
    expect(onDisk().previous).toEqual({ "kata-containers": IMAGE });
    expect(JSON.parse(readFileSync(backupOf(file), "utf8")).previous).toEqual({ "kata-containers": OLD });
  });

  it.each([
    ["truncated", (good: string) => good.slice(0, good.length / 2)],
    ["garbage", () => "\u0000garbage"],
    ["a list", () => "[]"],
    ["a newer schema", () => '{"schema":3,"members":{}}'],
    ["wrong types", (good: string) => good.replace('"switching": null', '"switching": "yes"')],
    [
      "a switch from outside the store",
      () => `{"schema":1,"switching":[{"member":"kata-containers","from":"../../../x","to":"${IMAGE}"}]}`,
    ],
  ])("%s: the last good copy is used and the journal says so", async (_, damage) => {
    const { log, clock, records, ids } = journal();
    const previous = { "kata-containers": OLD };
    await updateState(file, () => ({ previous, held: { "kata-containers": [IMAGE] } }));
    await updateState(file, () => ({ heldUnder: "digest" }));
    writeFileSync(file, damage(readFileSync(file, "utf8")));
    const state = await readState(file, { log, clock });
    expect(state).toMatchObject({ previous, held: { "kata-containers": [IMAGE] }, heldUnder: null });
    expect(ids()).toEqual([MessageId.stateRestored]);
    expect(records[0]?.message).toContain(`replaced by its last good copy ${file}.bak`);
    expect(onDisk()).toMatchObject({ previous, heldUnder: null });
    // The next update repairs the file from the good copy, and never copies the damaged one over the backup.
    await updateState(file, () => ({ lastSwitch: ["kata-containers"] }), { log, clock });
    expect(onDisk()).toMatchObject({ previous, lastSwitch: ["kata-containers"] });
    expect(JSON.parse(readFileSync(backupOf(file), "utf8")).previous).toEqual(previous);
    expect(await stateDamage(file)).toBeNull();
  });

  it("when the backup is bad too: both are moved aside, the state starts empty, loudly, once", async () => {
    const { log, clock, records, ids } = journal();
    writeFileSync(file, '{"schema":1,"switching":"yes"}');
    writeFileSync(backupOf(file), "{");
    expect(await readState(file, { log, clock })).toEqual(EMPTY_STATE);
    const movedTo = `${file}.corrupt-2026-12-02T074500123Z`;
    expect(readdirSync(dir).sort()).toEqual(
      [
        "state.json.corrupt-2026-12-02T074500123Z",
        "state.json.corrupt-2026-12-02T074500123Z.bak",
        "state.json.lock",
      ].sort(),
    );
    expect(readFileSync(movedTo, "utf8")).toBe('{"schema":1,"switching":"yes"}');
    expect(ids()).toEqual([MessageId.stateLost]);
    expect(records[0]).toMatchObject({ level: "error" });
    expect(records[0]?.message).toContain(`moved aside to ${movedTo}`);
    expect(records[0]?.message).toContain('switching must be a list, got "yes"');
    // The remedy names both files the recovery left, in the journal and on /status.
    const both = `look at ${movedTo} and its backup ${movedTo}.bak for what was lost (a rollback target, holds), then remove both`;
    expect(records[0]?.fields.REMEDY).toContain(both);
    expect((await stateDamage(file))?.remedy).toContain(both);
    expect(await stateDamage(file)).toMatchObject({ movedTo });
    // Said once: the next read finds nothing and starts empty without another record.
    expect(await readState(file, { log, clock })).toEqual(EMPTY_STATE);
    expect(records).toHaveLength(1);
    rmSync(movedTo);
    expect(await stateDamage(file)).toBeNull();
  });

  it("a FIFO in its place is judged, not read until something writes to it", async () => {
    const { log, clock, ids } = journal();
    execFileSync("mkfifo", [file]);
    expect(await readState(file, { log, clock })).toEqual(EMPTY_STATE);
    expect(ids()).toEqual([MessageId.stateLost]);
    expect(existsSync(file)).toBe(false);
  });

  it("a missing file with no backup is the first start: empty, and nothing said", async () => {
    const { log, clock, records } = journal();
    expect(await readState(file, { log, clock })).toEqual(EMPTY_STATE);
    expect(records).toEqual([]);
  });
});

describe("a state.json of another schema", () => {
  const V1 = {
    schema: 1,
    previous: OLD,
    previousCompanions: { "cloud-hypervisor": "cloud-hypervisor-v52.0-x86-64.raw" },
    nextBoot: {
      flatcarVersion: "4650.0.0",
      kata: "3.32.0",
      file: IMAGE,
      staged: true,
      reason: null,
      companions: { "cloud-hypervisor": "cloud-hypervisor-v53.0-x86-64.raw" },
    },
    held: { "kata-containers": [IMAGE] },
  };
  const migrated = {
    schema: 2,
    previous: { "cloud-hypervisor": "cloud-hypervisor-v52.0-x86-64.raw", "kata-containers": OLD },
    nextBoot: {
      flatcarVersion: "4650.0.0",
      files: { "cloud-hypervisor": "cloud-hypervisor-v53.0-x86-64.raw", "kata-containers": IMAGE },
      staged: true,
      reason: null,
      stagedOn: null,
      skipped: {},
    },
    held: { "kata-containers": [IMAGE] },
  };

  it("schema 1 is read as schema 2, nothing said; the first update writes schema 2 and keeps the old file as .bak", async () => {
    const { log, records } = journal();
    const text = JSON.stringify(V1);
    writeFileSync(file, text);
    expect(await readState(file, { primary: "kata-containers", log })).toEqual({ ...EMPTY_STATE, ...migrated });
    // Read, not rewritten: a kata-sysextd rolled back to before schema 2 still finds its own file.
    expect(readFileSync(file, "utf8")).toBe(text);
    await updateState(file, () => ({ heldUnder: "digest" }), { primary: "kata-containers", log });
    expect(onDisk()).toEqual({ ...EMPTY_STATE, ...migrated, heldUnder: "digest" });
    expect(onDisk()).not.toHaveProperty("previousCompanions");
    expect(JSON.parse(readFileSync(backupOf(file), "utf8"))).toEqual({ ...EMPTY_STATE, ...migrated });
    expect(records).toEqual([]);
  });

  it("a newer schema is refused, its last good copy used, and the journal says a newer kata-sysextd wrote it", async () => {
    const { log, clock, records, ids } = journal();
    await updateState(file, () => ({ previous: { "kata-containers": OLD } }));
    await updateState(file, () => ({ heldUnder: "digest" }));
    writeFileSync(file, JSON.stringify({ schema: 3, previous: { "kata-containers": IMAGE } }));
    expect(await readState(file, { log, clock })).toMatchObject({ previous: { "kata-containers": OLD } });
    expect(ids()).toEqual([MessageId.stateRestored]);
    expect(records[0]?.message).toContain(
      "schema 3 is newer than this kata-sysextd reads (1 to 2): a newer kata-sysextd wrote it; run that version again to keep what it recorded",
    );
  });
});

describe("temp files of state writes", () => {
  it("a write that fails on a full disk leaves no temp file behind", async () => {
    const mountPoint = join(dir, "full");
    mkdirSync(mountPoint);
    await run("mount", ["-t", "tmpfs", "-o", "size=64k", "kata-state-test", mountPoint], { check: true });
    try {
      const small = join(mountPoint, "state.json");
      await updateState(small, () => ({ heldUnder: "before" }));
      const before = readdirSync(mountPoint).sort();
      const huge = "x".repeat(256 * 1024);
      const error = await updateState(small, () => ({ heldUnder: huge })).then(
        () => null,
        (e: unknown) => e,
      );
      expect((error as NodeJS.ErrnoException | null)?.code).toBe("ENOSPC");
      expect(readdirSync(mountPoint).sort()).toEqual(before);
      expect(JSON.parse(readFileSync(small, "utf8")).heldUnder).toBe("before");
    } finally {
      await run("umount", [mountPoint], { check: true });
    }
  });

  it("leftovers of a crash are swept at start, and nothing else", async () => {
    const { log, records } = journal();
    await updateState(file, () => ({ heldUnder: "kept" }));
    const leftovers = [".state.json.4242.1.tmp", ".state.json.bak.4242.2.tmp"];
    for (const name of leftovers) writeFileSync(join(dir, name), "half");
    writeFileSync(join(dir, ".state.json.notes"), "not ours");
    expect((await sweepState(file, { log })).sort()).toEqual(leftovers.sort());
    expect(readdirSync(dir).sort()).toEqual([".state.json.notes", "state.json", "state.json.bak", "state.json.lock"]);
    expect(records.map((r) => r.message)).toEqual([
      `removed 2 leftover temp file(s) of ${file}: ${leftovers.join(", ")}`,
    ]);
    expect(onDisk().heldUnder).toBe("kept");
  });

  it("a sweep with nothing to remove leaves the lock alone; one with leftovers waits for it", async () => {
    await updateState(file, () => ({ heldUnder: "kept" }));
    const other = await holdLock(`${file}.lock`);
    try {
      expect(await sweepState(file, { lockWaitMs: 300 })).toEqual([]);
      writeFileSync(join(dir, ".state.json.4242.1.tmp"), "half");
      await expect(sweepState(file, { lockWaitMs: 300 })).rejects.toThrow(/is locked by another process/);
      expect(readdirSync(dir)).toContain(".state.json.4242.1.tmp");
    } finally {
      await other.kill();
    }
    expect(await sweepState(file)).toEqual([".state.json.4242.1.tmp"]);
  });
});
