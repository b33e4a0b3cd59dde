// state.json updates with real files and processes: concurrent updates in one process, and another process
// holding the state lock (the daemon and a `kata-sysextd --once` write the same file).
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, assert, beforeEach, describe, expect, it } from "vitest";
import { KataError } from "../../../src/errors.ts";
import { clearNextBoot, releaseHolds, updateState } from "../../../src/store/state.ts";
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
      kata: "3.30.0",
      file: "kata-containers-3.30.0-x86-64.raw",
      staged: true,
      reason: null,
      companions: {},
      stagedOn: "4152.2.0",
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
