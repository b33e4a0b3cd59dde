// The store lock with real processes: racing takers, and an owner killed with SIGKILL.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
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

/** A node child running `body` (an ES module) with acquireLock imported; argv after the script is `args`. */
function child(body: string, args: string[]) {
  const script = `import { acquireLock } from ${JSON.stringify(LOCK_MODULE)};\n${body}`;
  return spawn(process.execPath, ["--input-type=module", "-e", script, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
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
