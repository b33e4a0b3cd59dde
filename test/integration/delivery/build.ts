// Runs `npm run build:sysext`'s script for the delivery tests, once per vitest run: the build takes tens of
// seconds, so the first test file to ask builds into a folder keyed by the vitest main process and the others
// (worker processes of the same run) wait for it and reuse it.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { imageFileName } from "../../../src/delivery/layout.ts";
import { SHARED_DIR_ENV } from "../../global-tmp.ts";
import { PROJECT } from "../../helpers/sandbox.ts";

export const VERSION = (JSON.parse(readFileSync(join(PROJECT, "package.json"), "utf8")) as { version: string }).version;

export interface Built {
  image: string;
  sha256: string;
  /** The SHA256SUMS written beside the image. */
  sums: string;
  /** What the build printed (size, composition, ABI findings). */
  output: string;
  /** Digest over every input file the build read, as it printed it. */
  inputs: string;
}

/** A fresh build into `outDir` (a real child process running scripts/build-sysext.ts on the pinned Node). */
export function buildSysext(outDir: string, env: NodeJS.ProcessEnv = {}): Promise<Built> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [join(PROJECT, "scripts/build-sysext.ts"), "--out", outDir],
      { cwd: PROJECT, timeout: 300_000, env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`build-sysext failed: ${error.message}\n${stdout}${stderr}`));
          return;
        }
        const image = join(outDir, imageFileName(VERSION));
        const sha256 = createHash("sha256").update(readFileSync(image)).digest("hex");
        const inputs = /^ {2}inputs ([0-9a-f]{64}) /m.exec(stdout)?.[1] ?? "";
        const sums = readFileSync(join(outDir, "SHA256SUMS"), "utf8");
        resolve({ image, sha256, sums, output: stdout + stderr, inputs });
      },
    );
  });
}

let shared: Promise<Built> | undefined;

/** The build shared by every delivery test of this vitest run. */
export function sharedBuild(): Promise<Built> {
  shared ??= buildOnceForRun();
  return shared;
}

async function buildOnceForRun(): Promise<Built> {
  // The run's shared directory (test/global-tmp.ts), not the file's own temporary directory, which goes with it.
  const base = process.env[SHARED_DIR_ENV] ?? tmpdir();
  const prefix = "kata-sysextd-build-";
  // Builds of earlier runs (their vitest process is gone) are 40 MB each: remove them.
  for (const entry of readdirSync(base)) {
    const owner = Number(entry.slice(prefix.length));
    if (entry.startsWith(prefix) && !entry.endsWith(".lock") && owner !== process.ppid && !isAlive(owner)) {
      rmSync(join(base, entry), { recursive: true, force: true });
    }
  }
  const dir = join(base, `${prefix}${process.ppid}`);
  const done = join(dir, "done.json");
  const lock = `${dir}.lock`;
  for (;;) {
    if (existsSync(done)) return JSON.parse(readFileSync(done, "utf8")) as Built;
    try {
      writeFileSync(lock, String(process.pid), { flag: "wx" });
      break;
    } catch {
      // Another worker builds; a lock whose holder died is stale (an empty one is still being written).
      const holder = readText(lock);
      if (holder !== "" && !isAlive(Number(holder))) rmSync(lock, { force: true });
      await sleep(500);
    }
  }
  try {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const built = await buildSysext(dir);
    writeFileSync(done, JSON.stringify(built));
    return built;
  } finally {
    rmSync(lock, { force: true });
  }
}

function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return pid > 0;
  } catch {
    return false;
  }
}
