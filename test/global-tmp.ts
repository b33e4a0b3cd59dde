// vitest globalSetup: every run gets a temporary directory of its own and must leave it empty.
//
// TMPDIR (which os.tmpdir() and mktemp follow) points into a fresh directory under the machine's temp base for
// the whole run, so what a test leaves behind is told apart from what other processes on the machine write to
// /tmp meanwhile; test/setup-tmp.ts gives each test file a directory inside it and removes it after the file.
// Teardown fails the run and lists every leftover with its size. Leftovers are not deleted here: one may be a
// mount point (an nspawn root, a bind mount), and the list is what is needed to fix the test. The temp base is
// compared too: a test that writes to /tmp by a fixed path escapes TMPDIR, and shows up there.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmdirSync, rmSync } from "node:fs";
import { join } from "node:path";

/** The machine's temp base, for locks shared with other runs (the nspawn boot lock). */
export const TMP_BASE_ENV = "KATA_SYSEXTD_TEST_TMP_BASE";
/** This run's directory; test files get theirs inside it. */
export const RUN_DIR_ENV = "KATA_SYSEXTD_TEST_RUN_DIR";
/** What the files of one run share (the daemon's sysext build), removed with the run. */
export const SHARED_DIR_ENV = "KATA_SYSEXTD_TEST_SHARED_DIR";

export default function setup(): () => void {
  const base = process.env[TMP_BASE_ENV] ?? process.env.TMPDIR ?? "/tmp";
  const before = new Set(readdirSync(base));
  const runDir = mkdtempSync(join(base, "kata-sysextd-test-run-"));
  const shared = join(runDir, "shared");
  mkdirSync(shared);
  process.env[TMP_BASE_ENV] = base;
  process.env[RUN_DIR_ENV] = runDir;
  process.env[SHARED_DIR_ENV] = shared;
  process.env.TMPDIR = runDir;

  return () => {
    rmSync(shared, { recursive: true, force: true });
    const left = readdirSync(runDir);
    const escaped = readdirSync(base).filter((entry) => !before.has(entry) && join(base, entry) !== runDir);
    if (left.length === 0) rmdirSync(runDir);
    const problems: string[] = [];
    if (left.length > 0) {
      problems.push(`the tests left ${left.length} entries in their temporary directory ${runDir}:`);
      problems.push(...sizes(runDir, left));
    }
    // Other processes on the machine write to the temp base too; only under CI is the machine the run's own.
    if (escaped.length > 0) {
      if (process.env.CI === "true") {
        problems.push(`${escaped.length} new entries in ${base}, written there by a fixed path:`);
        problems.push(...sizes(base, escaped));
      } else {
        console.warn(
          `${escaped.length} new entries in ${base} during the run (other processes, or a test writing there by a fixed path; CI=true fails on them)`,
        );
      }
    }
    if (problems.length > 0) throw new Error(`tests must leave ${base} as they found it\n${problems.join("\n")}`);
  };
}

/** "  <size>  <entry>" per entry, largest first, as du measures them (apparent size in bytes, summed). */
function sizes(dir: string, entries: string[]): string[] {
  const measured = entries.map((entry) => {
    let bytes = 0;
    try {
      bytes = Number(execFileSync("du", ["-sb", join(dir, entry)], { encoding: "utf8" }).split("\t")[0]);
    } catch {
      // vanished, or not readable: listed with size 0
    }
    return { entry, bytes };
  });
  const total = measured.reduce((sum, m) => sum + m.bytes, 0);
  return [
    ...measured.sort((a, b) => b.bytes - a.bytes).map((m) => `  ${mib(m.bytes).padStart(10)}  ${m.entry}`),
    `  ${mib(total).padStart(10)}  in all`,
  ];
}

const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MiB`;
