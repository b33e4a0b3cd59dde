// Download throughput and memory of downloadImage against the physical limit, measured in the same run: the
// slower of `curl -o FILE` (the network and the page cache, same loopback URL) and `dd conv=fdatasync` of the
// same size (the disk taking the bytes durably, which ours waits for before the rename and curl never does).
// The server runs in its own process so it does not share an event loop with the download being measured.
// Run alone: `npx node bench/fetch.bench.ts`.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { systemClock, systemRandom } from "../src/clock.ts";
import { run } from "../src/exec.ts";
import { downloadImage } from "../src/fetch/download.ts";
import { createLogger } from "../src/log/logger.ts";
import { median, round } from "./stats.ts";

const MiB = 1024 * 1024;

export interface FetchBench {
  /** downloadImage throughput / the slower of curl and the disk (medians); the target is >= 0.9. */
  ratio: number;
  /** downloadImage throughput / curl throughput alone. */
  ratioToCurl: number;
  bytes: number;
  oursMiBps: number;
  curlMiBps: number;
  /** `curl -o FILE && sha256sum FILE && sync FILE`: the same work as ours done by the usual tools. */
  curlVerifiedMiBps: number;
  ratioToCurlVerified: number;
  /**
   * How fast the disk took the same bytes durably in the same runs (`dd conv=fdatasync`): ours must wait for it
   * before the rename, `curl -o` never does, so on a slow disk ratioToCurl follows the disk.
   */
  diskMiBps: number;
  /** RSS of this process just before the download, and the peak increase seen while it ran (sampled). */
  rssIdleMiB: number;
  rssPeakIncreaseMiB: number;
  rssIncreasesMiB: number[];
  /** The process's high-water mark (getrusage maxrss, warm-up included) minus the idle RSS. */
  maxRssIncreaseMiB: number;
  /** Growth of a fresh process over its first download (code loading, heap growth), not counted above. */
  coldRssIncreaseMiB: number;
  runs: number;
}

export async function benchFetch(sizeBytes = 512 * MiB, runs = 5): Promise<FetchBench> {
  const work = mkdtempSync(join(tmpdir(), "kata-bench-fetch-"));
  const serveDir = join(work, "serve");
  const outDir = join(work, "out");
  const file = "kata-containers-9.9.9-x86-64.raw";
  let server: Awaited<ReturnType<typeof startServerProcess>> | null = null;
  try {
    await run("mkdir", ["-p", serveDir, outDir], { check: true });
    server = await startServerProcess(serveDir, file, sizeBytes);
    const { sha256 } = server;
    const url = `${server.url}${file}`;
    const curlOut = join(outDir, "curl.raw");
    const dest = join(outDir, file);
    const download = (): Promise<unknown> =>
      downloadImage({
        url,
        dest,
        tmpDir: outDir,
        expectedSha256: sha256,
        maxBytes: sizeBytes,
        connectTimeoutMs: 5000,
        idleTimeoutMs: 30_000,
        retries: 0,
        clock: systemClock,
        random: systemRandom,
        log: createLogger(() => undefined),
      });

    // Not measured: warms the server's page cache and loads and compiles the download path, as in a daemon
    // that has been running for a while.
    const coldIdle = process.memoryUsage.rss();
    await download();
    const coldIncrease = process.resourceUsage().maxRSS * 1024 - coldIdle;
    rmSync(dest, { force: true });
    const ours: number[] = [];
    const theirs: number[] = [];
    const theirsVerified: number[] = [];
    const disk: number[] = [];
    const rssIncreases: number[] = [];
    const idleBefore: number[] = [];
    for (let i = 0; i < runs; i++) {
      theirs.push(await timed(() => curl(url, curlOut)));
      rmSync(curlOut, { force: true });
      theirsVerified.push(await timed(() => curlVerified(url, curlOut)));
      rmSync(curlOut, { force: true });
      disk.push(await timed(() => durableCopy(join(serveDir, file), curlOut)));
      rmSync(curlOut, { force: true });

      const idle = process.memoryUsage.rss();
      let peak = idle;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage.rss());
      }, 5);
      try {
        ours.push(await timed(download));
      } finally {
        clearInterval(sampler);
      }
      idleBefore.push(idle);
      rssIncreases.push(Math.max(peak, process.memoryUsage.rss()) - idle);
      rmSync(dest, { force: true });
    }
    const oursMiBps = sizeBytes / MiB / (median(ours) / 1000);
    const curlMiBps = sizeBytes / MiB / (median(theirs) / 1000);
    const curlVerifiedMiBps = sizeBytes / MiB / (median(theirsVerified) / 1000);
    const diskMiBps = sizeBytes / MiB / (median(disk) / 1000);
    const maxRss = process.resourceUsage().maxRSS * 1024;
    return {
      ratio: round(oursMiBps / Math.min(curlMiBps, diskMiBps), 3),
      ratioToCurl: round(oursMiBps / curlMiBps, 3),
      bytes: sizeBytes,
      oursMiBps: round(oursMiBps, 1),
      curlMiBps: round(curlMiBps, 1),
      curlVerifiedMiBps: round(curlVerifiedMiBps, 1),
      ratioToCurlVerified: round(oursMiBps / curlVerifiedMiBps, 3),
      diskMiBps: round(diskMiBps, 1),
      rssIdleMiB: round(Math.min(...idleBefore) / MiB, 1),
      rssPeakIncreaseMiB: round(Math.max(...rssIncreases) / MiB, 1),
      rssIncreasesMiB: rssIncreases.map((v) => round(v / MiB, 1)),
      maxRssIncreaseMiB: round(Math.max(0, maxRss - Math.min(...idleBefore)) / MiB, 1),
      coldRssIncreaseMiB: round(coldIncrease / MiB, 1),
      runs,
    };
  } finally {
    await server?.close();
    rmSync(work, { recursive: true, force: true });
  }
}

async function curl(url: string, out: string): Promise<void> {
  await run("curl", ["-sS", "--fail", "-o", out, url], { check: true, timeoutMs: 600_000 });
}

async function curlVerified(url: string, out: string): Promise<void> {
  await curl(url, out);
  await run("sha256sum", [out], { check: true, timeoutMs: 600_000 });
  await run("sync", [out], { check: true, timeoutMs: 600_000 });
}

/** The disk's share of our work alone: the served file is in the page cache, so this measures the writes. */
async function durableCopy(from: string, to: string): Promise<void> {
  await run("dd", [`if=${from}`, `of=${to}`, "bs=1M", "conv=fdatasync", "status=none"], {
    check: true,
    timeoutMs: 600_000,
  });
}

async function timed(action: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await action();
  return performance.now() - start;
}

/**
 * A child process that writes `size` random bytes to `dir/file` and serves `dir` with the release server. Making
 * the file there keeps this process's RSS high-water mark about the download alone.
 */
async function startServerProcess(
  dir: string,
  file: string,
  size: number,
): Promise<{ url: string; sha256: string; close(): Promise<void> }> {
  const helper = fileURLToPath(new URL("../test/helpers/release-server.ts", import.meta.url));
  const script = `
import { createHash, randomBytes } from "node:crypto";
import { openSync, writeSync, closeSync } from "node:fs";
const { startReleaseServer } = await import(${JSON.stringify(helper)});
const hash = createHash("sha256");
const fd = openSync(${JSON.stringify(join(dir, file))}, "w");
for (let left = ${size}; left > 0; ) {
  const chunk = randomBytes(Math.min(left, 4 << 20));
  hash.update(chunk);
  writeSync(fd, chunk);
  left -= chunk.length;
}
closeSync(fd);
const server = await startReleaseServer(${JSON.stringify(dir)});
process.stdout.write(JSON.stringify({ url: server.url, sha256: hash.digest("hex") }) + "\\n");
process.stdin.on("end", () => server.close().then(() => process.exit(0)));
process.stdin.resume();`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["pipe", "pipe", "inherit"] });
  const ready = await new Promise<{ url: string; sha256: string }>((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("\n")) resolve(JSON.parse(out) as { url: string; sha256: string });
    });
    child.once("exit", (code) => reject(new Error(`bench server exited ${code}`)));
  });
  return {
    ...ready,
    close: () =>
      new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.stdin.end();
      }),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(JSON.stringify(await benchFetch(), null, 2));
}
