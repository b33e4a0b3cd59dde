// One pass at a time per host: `kata-sysextd --once` started by hand while the daemon runs must not download
// into the same partial file or switch links under it. state.json updates take a lock of their own the same way,
// waiting for it (state.ts).
//
// The lock is the kernel's: flock(2) on the store's .lock file, taken through util-linux `flock` on a descriptor
// we pass it (Node has no flock). A flock belongs to the open file description, so it stays ours after that
// child exits, and the kernel drops it when our descriptor closes, however the process ends (kill -9 too).
// Nothing is ever stale: no pid to reuse across a reboot, no file that exists empty while being written, no
// takeover race. The file stays in place and holds the owner's pid, for the message that names it.
import { spawn } from "node:child_process";
import { type FileHandle, open } from "node:fs/promises";
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
  const handle = await open(path, "a+", 0o600); // created if missing; nothing truncated before we hold it
  try {
    const result = await flock(handle, options.waitMs);
    if (result.code === HELD) {
      const owner = Number.parseInt(await handle.readFile("utf8").catch(() => ""), 10);
      throw (options.held ?? passRunning)(Number.isInteger(owner) && owner > 0 ? owner : null);
    }
    if (result.code !== 0) {
      throw new KataError("store-failed", `cannot lock ${path}: flock ${result.why}`, {
        remedy: "kata-sysextd needs util-linux flock in PATH",
      });
    }
    await handle.truncate(0);
    await handle.write(`${process.pid}\n`); // "a+" appends: at 0 after the truncate
  } catch (err) {
    await handle.close();
    throw err;
  }
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      await handle.close(); // the last descriptor of the description: the kernel unlocks
    },
  };
}

/** `flock --nonblock --exclusive 3` (or `--timeout` seconds) with our descriptor as the child's fd 3. */
function flock(handle: FileHandle, waitMs: number | undefined): Promise<{ code: number; why: string }> {
  const wait = waitMs === undefined ? ["--nonblock"] : ["--timeout", String(waitMs / 1000)];
  return new Promise((resolve) => {
    const child = spawn("flock", [...wait, "--exclusive", "--conflict-exit-code", String(HELD), "3"], {
      stdio: ["ignore", "ignore", "pipe", handle.fd],
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
