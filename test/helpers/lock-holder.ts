// Another process holding a lock the way kata-sysextd takes it (src/store/lock.ts), until the test kills it.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";

const LOCK_MODULE = join(import.meta.dirname, "../../src/store/lock.ts");

export interface LockHolder {
  pid: number | undefined;
  /** SIGKILL: nothing unlocks by hand, the kernel drops the lock with the process. */
  kill(): Promise<void>;
}

/**
 * Starts a node child that takes the lock on `path` and keeps it; resolves once it holds it. `env` may point
 * KATA_SYSEXTD_FLOCK_ADDON elsewhere, so that the child takes it with util-linux flock instead.
 */
export async function holdLock(path: string, env: NodeJS.ProcessEnv = process.env): Promise<LockHolder> {
  const script = `import { acquireLock } from ${JSON.stringify(LOCK_MODULE)};
await acquireLock(process.argv[1]); console.log("held"); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script, path], {
    stdio: ["ignore", "pipe", "inherit"],
    env,
  });
  await once(child.stdout, "data");
  const exited = once(child, "exit");
  return {
    pid: child.pid,
    kill: async () => {
      child.kill("SIGKILL");
      await exited;
    },
  };
}
