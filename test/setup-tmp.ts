// vitest setupFiles: each test file runs with a temporary directory of its own (TMPDIR, inside the run's, see
// global-tmp.ts), removed after the file's last hook, whether its tests passed, failed or timed out. Everything
// the tests and their helpers create with os.tmpdir() or mktemp, and every child process they start, lands there.
// A directory with something still mounted under it is left in place, for the run's teardown to report.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll } from "vitest";
import { RUN_DIR_ENV } from "./global-tmp.ts";

const runDir = process.env[RUN_DIR_ENV];
if (runDir !== undefined) {
  const fileDir = mkdtempSync(join(runDir, "file-"));
  process.env.TMPDIR = fileDir;
  // Registered before the file's own hooks, so it runs after them: servers closed, children stopped.
  afterAll(() => {
    process.env.TMPDIR = runDir;
    if (mountsUnder(fileDir).length > 0) return;
    try {
      // Retried: a child process the file stopped may still be writing its last file as the folder goes.
      rmSync(fileDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    } catch {
      // Left for the run's teardown to list, rather than failing this file's tests for it.
    }
  });
}

/** Mount points at or below `dir`, from this process's mountinfo (field 5 is the mount point, octal-escaped). */
function mountsUnder(dir: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) =>
      (line.split(" ")[4] ?? "").replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))),
    )
    .filter((point) => point === dir || point.startsWith(`${dir}/`));
}
