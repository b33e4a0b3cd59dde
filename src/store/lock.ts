// One pass at a time per host: `kata-sysextd --once` started by hand while the daemon runs must not download
// into the same partial file or switch links under it. The lock is a file created with O_EXCL holding the
// owner's pid; a lock whose owner is gone (kill -9) is taken over.
import { open, readFile, rm } from "node:fs/promises";
import { KataError } from "../errors.ts";

export interface Lock {
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export async function acquireLock(path: string): Promise<Lock> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, "wx", 0o600);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return { release: () => rm(path, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = Number.parseInt(await readFile(path, "utf8").catch(() => ""), 10);
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
        throw new KataError("store-failed", `another kata-sysextd pass is running (pid ${owner})`, {
          remedy: "wait for it to finish, or use `kata-sysextctl refresh` to ask the running daemon",
        });
      }
      // The owner died without releasing it: take over.
      await rm(path, { force: true });
    }
  }
  throw new KataError("store-failed", `cannot take the lock ${path}`);
}
