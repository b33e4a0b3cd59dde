// One pass at a time per host: `kata-sysextd --once` started by hand while the daemon runs must not download
// into the same partial file or switch links under it. state.json updates take a lock of their own the same way,
// waiting for it (state.ts).
//
// The lock is the kernel's: flock(2) on the store's .lock file, on a descriptor we hold. Node has no flock: our
// addon build/flock.node (native/flock.node.c) takes it in process; where it was not built, util-linux `flock`
// takes it on a descriptor we pass it. A flock belongs to the open file description, so it stays ours after that
// child exits, and the kernel drops it when our descriptor closes, however the process ends (kill -9 too).
// Nothing is ever stale: no pid to reuse across a reboot, no file that exists empty while being written, no
// takeover race. The file stays in place and holds the owner's pid, for the message that names it.
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { KataError } from "../errors.ts";

export interface Lock {
  release(): Promise<void>;
}

/** flock's exit status when another process holds the lock (its --conflict-exit-code). */
const HELD = 75;

export interface LockOptions {
  /**
   * Wait up to this long for another holder to let go. Unset, fail at once: a second pass must not queue for an
   * hour behind a download, while a state update is held up only for the milliseconds of another's write.
   */
  waitMs?: number;
  /** The error when another process holds it, given the pid its file names (null when it names none). */
  held?: (owner: number | null) => KataError;
}

const passRunning = (owner: number | null) =>
  new KataError("store-failed", `another kata-sysextd pass is running${owner !== null ? ` (pid ${owner})` : ""}`, {
    remedy: "wait for it to finish, or use `kata-sysextctl refresh` to ask the running daemon",
  });

export async function acquireLock(path: string, options: LockOptions = {}): Promise<Lock> {
  // The lock file's few bytes are read and written synchronously: a round trip through the thread pool for each
  // cost more than the call, twice or three times in every pass.
  const fd = openSync(path, "a+", 0o600); // created if missing; nothing truncated before we hold it
  try {
    const tryLock = inProcessFlock();
    const result =
      tryLock === null ? await flock(fd, options.waitMs) : await flockInProcess(tryLock, fd, options.waitMs);
    if (result.code === HELD) {
      const owner = Number.parseInt(readOwner(fd), 10);
      throw (options.held ?? passRunning)(Number.isInteger(owner) && owner > 0 ? owner : null);
    }
    if (result.code !== 0) {
      throw new KataError(
        "store-failed",
        `cannot lock ${path}: flock ${result.why}`,
        tryLock === null ? { remedy: "kata-sysextd needs util-linux flock in PATH" } : {},
      );
    }
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`); // "a+" appends: at 0 after the truncate
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      closeSync(fd); // the last descriptor of the description: the kernel unlocks
    },
  };
}

/** The pid the holder wrote into the lock file, as text ("" when it cannot be read). */
function readOwner(fd: number): string {
  try {
    return readFileSync(fd, "utf8");
  } catch {
    return "";
  }
}

/** The addon's flock(fd, LOCK_EX | LOCK_NB): true when taken, false when another holds it. */
type TryLock = (fd: number) => boolean;

/** build/flock.node beside this checkout (or where KATA_SYSEXTD_FLOCK_ADDON says); null when it was not built. */
let addon: TryLock | null | undefined;

function inProcessFlock(): TryLock | null {
  if (addon !== undefined) return addon;
  const path =
    process.env.KATA_SYSEXTD_FLOCK_ADDON || fileURLToPath(new URL("../../build/flock.node", import.meta.url));
  const module = { exports: {} as { tryLock?: TryLock } };
  try {
    process.dlopen(module, path);
    addon = typeof module.exports.tryLock === "function" ? module.exports.tryLock : null;
  } catch {
    addon = null; // not built (no C compiler at install): util-linux flock does it
  }
  return addon;
}

/** A monotonic clock that loads nothing (the global `performance` loads node:perf_hooks' modules at first use). */
const nowMs = (): number => Number(process.hrtime.bigint() / 1_000_000n);

/** The longest pause between tries while another process holds the lock. */
const RETRY_MAX_MS = 50;

/** flock(2) in process, with flock(1)'s outcomes: tried until `waitMs` has passed (unset: once). */
async function flockInProcess(
  tryLock: TryLock,
  fd: number,
  waitMs: number | undefined,
): Promise<{ code: number; why: string }> {
  const deadline = nowMs() + (waitMs ?? 0);
  for (let pause = 1; ; pause = Math.min(2 * pause, RETRY_MAX_MS)) {
    try {
      if (tryLock(fd)) return { code: 0, why: "" };
    } catch (err) {
      return { code: -1, why: `failed: ${(err as Error).message}` };
    }
    const left = deadline - nowMs();
    if (left <= 0) return { code: HELD, why: "held" };
    await new Promise((resolve) => setTimeout(resolve, Math.min(pause, left)));
  }
}

/** `flock --nonblock --exclusive 3` (or `--timeout` seconds) with our descriptor as the child's fd 3. */
function flock(fd: number, waitMs: number | undefined): Promise<{ code: number; why: string }> {
  const wait = waitMs === undefined ? ["--nonblock"] : ["--timeout", String(waitMs / 1000)];
  // Loaded here: with the addon, taking a lock needs no child process at all.
  const { spawn } = process.getBuiltinModule("node:child_process");
  return new Promise((resolve) => {
    const child = spawn("flock", [...wait, "--exclusive", "--conflict-exit-code", String(HELD), "3"], {
      stdio: ["ignore", "ignore", "pipe", fd],
    });
    let stderr = "";
    child.stderr?.on("data", (data: Buffer) => {
      stderr += data.toString();
    });
    child.once("error", (err) => resolve({ code: -1, why: `could not run: ${err.message}` }));
    child.once("close", (code, signal) =>
      resolve({ code: code ?? -1, why: `exited ${code ?? signal}${stderr.trim() ? `: ${stderr.trim()}` : ""}` }),
    );
  });
}
