// The store lock with real processes: racing takers, and an owner killed with SIGKILL.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { acquireLock } from "../../../src/store/lock.ts";
import { holdLock } from "../../helpers/lock-holder.ts";

const LOCK_MODULE = join(import.meta.dirname, "../../../src/store/lock.ts");
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "kata-lock-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** build/flock.node, the in-process flock (scripts/build-helpers.mjs); without it the lock runs util-linux flock. */
const ADDON = join(import.meta.dirname, "../../../build/flock.node");
/** An environment in which acquireLock finds no addon and runs util-linux flock. */
const WITHOUT_ADDON = { ...process.env, KATA_SYSEXTD_FLOCK_ADDON: join(import.meta.dirname, "no-such-flock.node") };

/** A node child running `body` (an ES module) with acquireLock imported; argv after the script is `args`. */
function child(body: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  const script = `import { acquireLock } from ${JSON.stringify(LOCK_MODULE)};\n${body}`;
  return spawn(process.execPath, ["--input-type=module", "-e", script, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    env,
  });
}

/** A child that takes the lock on `path` (waiting up to `waitMs`, or not at all) and prints what happened. */
async function takeIn(env: NodeJS.ProcessEnv, path: string, waitMs?: number): Promise<string> {
  const body = `
try {
  const lock = await acquireLock(process.argv[1], ${waitMs === undefined ? "{}" : `{ waitMs: ${waitMs} }`});
  console.log("taken " + (await import("node:fs")).readFileSync(process.argv[1], "utf8").trim());
  await lock.release();
} catch (err) {
  console.log("refused: " + err.message);
}`;
  const taker = child(body, [path], env);
  let out = "";
  taker.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  await once(taker, "exit");
  return out.trim();
}

describe("store lock", () => {
  it("two processes taking the same fresh lock at the same moment: never both hold it", async () => {
    const rounds = 60;
    const log = join(dir, "held.log");
    const start = Date.now() + 1500; // both children are up and compiled by then
    const racer = `
import { appendFileSync } from "node:fs";
const [dir, log, start, rounds] = process.argv.slice(1);
for (let i = 0; i < Number(rounds); i++) {
  const at = Number(start) + i * 50;
  while (Date.now() < at) {} // both take off at the same instant
  try {
    const lock = await acquireLock(dir + "/.lock-" + i);
    appendFileSync(log, i + " in\\n");
    await new Promise((r) => setTimeout(r, 20));
    appendFileSync(log, i + " out\\n");
    await lock.release();
  } catch (err) {
    if (!String(err).includes("another kata-sysextd pass is running")) throw err;
    appendFileSync(log, i + " busy\\n");
  }
}`;
    const racers = [0, 1].map(() => child(racer, [dir, log, String(start), String(rounds)]));
    const codes = await Promise.all(racers.map(async (r) => (await once(r, "exit"))[0]));
    expect(codes).toEqual([0, 0]);
    // Per round: every "in" is followed by its "out" before anyone else's "in". A racer that set off late (a
    // loaded machine) may take the lock after the first let go, which is no overlap; one that was refused says
    // "busy", and some must have been, or the racers never met.
    const lines = readFileSync(log, "utf8").trim().split("\n");
    for (let i = 0; i < rounds; i++) {
      const held = lines.filter((l) => l === `${i} in` || l === `${i} out`);
      expect(held.length, `round ${i}`).toBeGreaterThan(0);
      expect(held, `round ${i}`).toEqual(held.map((_, k) => (k % 2 === 0 ? `${i} in` : `${i} out`)));
    }
    expect(lines.filter((l) => l.endsWith(" busy")).length).toBeGreaterThan(0);
  }, 30_000);

  it("is the kernel's flock either way: the in-process addon and util-linux flock exclude each other", async () => {
    expect(existsSync(ADDON), "build/flock.node: run node scripts/build-helpers.mjs").toBe(true);
    const path = join(dir, ".lock");
    const pairs: [NodeJS.ProcessEnv, NodeJS.ProcessEnv][] = [
      [process.env, WITHOUT_ADDON],
      [WITHOUT_ADDON, process.env],
    ];
    for (const [holderEnv, takerEnv] of pairs) {
      const owner = await holdLock(path, holderEnv);
      expect(await takeIn(takerEnv, path)).toBe(`refused: another kata-sysextd pass is running (pid ${owner.pid})`);
      await owner.kill();
      expect(await takeIn(takerEnv, path)).toMatch(/^taken \d+$/);
    }
  });

  it("a wait for a held lock ends when the holder lets go, or when the wait is over", async () => {
    const path = join(dir, ".lock");
    for (const env of [process.env, WITHOUT_ADDON]) {
      const owner = await holdLock(path);
      // Let go while the taker waits: it gets the lock, it is not refused at the first try.
      const waiting = takeIn(env, path, 10_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      await owner.kill();
      expect(await waiting).toMatch(/^taken \d+$/);
      const stays = await holdLock(path);
      expect(await takeIn(env, path, 200)).toBe(`refused: another kata-sysextd pass is running (pid ${stays.pid})`);
      await stays.kill();
    }
  });

  it("an owner killed with SIGKILL leaves the lock free; the message names a live owner's pid", async () => {
    const path = join(dir, ".lock");
    const owner = await holdLock(path);
    await expect(acquireLock(path)).rejects.toThrow(`another kata-sysextd pass is running (pid ${owner.pid})`);
    await owner.kill();
    const lock = await acquireLock(path);
    expect(readFileSync(path, "utf8")).toBe(`${process.pid}\n`);
    await lock.release();
    await lock.release(); // twice is harmless
    await (await acquireLock(path)).release();
  });
});
