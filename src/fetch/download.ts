// Downloads one image: streamed into `<tmpDir>/.<file>.partial` with the SHA-256 computed as bytes arrive,
// resumed with HTTP Range after an interruption, verified, fsynced and only then renamed into place.
import { createHash, type Hash } from "node:crypto";
import { createReadStream, createWriteStream, fdatasync, type WriteStream } from "node:fs";
import { mkdir, readdir, rename, rm, stat, truncate } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Clock, Random } from "../clock.ts";
import { asKataError, KataError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { DownloadProgress } from "../status.ts";
import { fsyncDir } from "../store/fsutil.ts";
import { FetchError, httpGet, parseContentRange, type Response } from "./http.ts";
import { reclaimer } from "./reclaim.ts";
import { withRetries } from "./retry.ts";

export interface DownloadOptions {
  url: string;
  /** Final path of the verified image. */
  dest: string;
  /** Where the .partial lives; must be on the same filesystem as `dest` so the rename is atomic. */
  tmpDir: string;
  expectedSha256: string;
  maxBytes: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  retries: number;
  clock: Clock;
  random: Random;
  log: Logger;
  onProgress?: (progress: DownloadProgress) => void;
  signal?: AbortSignal;
}

export interface Downloaded {
  path: string;
  sha256: string;
  bytes: number;
}

const PROGRESS_INTERVAL_MS = 500;
const LOG_INTERVAL_MS = 10_000;

export function partialPath(tmpDir: string, file: string): string {
  return join(tmpDir, `.${file}.partial`);
}

export async function downloadImage(opts: DownloadOptions): Promise<Downloaded> {
  try {
    return await download(opts);
  } catch (err) {
    // FetchError and the digest check are KataErrors already; file system trouble (ENOSPC, EACCES) becomes one.
    throw asKataError(err, "store-failed");
  }
}

async function download(opts: DownloadOptions): Promise<Downloaded> {
  const file = basename(opts.dest);
  const expected = opts.expectedSha256.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(expected)) {
    throw new KataError("manifest-invalid", `${file}: expected SHA-256 "${opts.expectedSha256}" is not 64 hex digits`);
  }
  const partial = partialPath(opts.tmpDir, file);
  const log = opts.log.with({ KATA_IMAGE_FILE: file });
  await mkdir(opts.tmpDir, { recursive: true });

  const policy = { ...opts, log };
  const got = await withRetries(`download of ${file}`, policy, async () => {
    const first = await transfer(opts, file, partial, log);
    if (first.sha256 === expected || !first.resumed) return first;
    // The bytes kept from an earlier run belonged to other content (republished file, torn write): start over.
    log.warning("resumed download does not match its digest, downloading again from the start");
    await rm(partial, { force: true });
    return transfer(opts, file, partial, log);
  });
  if (got.sha256 !== expected) {
    await rm(partial, { force: true });
    throw new KataError("digest-mismatch", `${file}: SHA-256 is ${got.sha256}, SHA256SUMS says ${expected}`, {
      remedy: "the published image or its SHA256SUMS line is wrong or was tampered with; nothing was installed",
    });
  }
  try {
    await rename(partial, opts.dest);
    await fsyncDir(dirname(opts.dest));
  } catch (err) {
    await rm(partial, { force: true });
    throw asKataError(err, "store-failed");
  }
  log.info("image downloaded and verified", { BYTES: got.bytes, SHA256: got.sha256 });
  return { path: opts.dest, sha256: got.sha256, bytes: got.bytes };
}

interface Transferred {
  sha256: string;
  bytes: number;
  /** Some bytes came from a .partial left by an earlier attempt. */
  resumed: boolean;
}

/** One HTTP exchange into the .partial. Network errors leave the .partial for the next attempt. */
async function transfer(opts: DownloadOptions, file: string, partial: string, log: Logger): Promise<Transferred> {
  let offset = await sizeOf(partial);
  if (offset > opts.maxBytes) offset = await restart(partial);
  const hash = createHash("sha256");
  if (offset > 0) await hashPrefix(partial, offset, hash);

  let res: Response;
  try {
    res = await httpGet(opts.url, {
      connectTimeoutMs: opts.connectTimeoutMs,
      idleTimeoutMs: opts.idleTimeoutMs,
      maxBytes: opts.maxBytes,
      headers: offset > 0 ? { Range: `bytes=${offset}-` } : {},
      signal: opts.signal,
    });
  } catch (err) {
    // 416: what we hold is no prefix the server can continue (the file shrank or was replaced): start over.
    if (offset === 0 || !(err instanceof FetchError && err.status === 416)) throw err;
    log.info("server cannot continue the partial download, starting from the beginning", { OFFSET: offset });
    await restart(partial);
    return transfer(opts, file, partial, log);
  }
  if (offset === 0) {
    log.info("downloading image", { URL: opts.url, BYTES_TOTAL: res.contentLength ?? undefined });
    return stream(opts, file, partial, res, { hash, offset: 0, total: res.contentLength, resumed: false });
  }

  const range = res.status === 206 ? parseContentRange(res.headers["content-range"]) : null;
  if (range === null || range.start !== offset) {
    log.info("server did not resume the download, starting from the beginning", { HTTP_STATUS: res.status });
    if (res.status === 200) {
      return stream(opts, file, partial, res, {
        hash: createHash("sha256"),
        offset: 0,
        total: res.contentLength,
        resumed: false,
      });
    }
    // A 206 for some other range than asked: nothing to build on.
    res.body.destroy();
    await restart(partial);
    return transfer(opts, file, partial, log);
  }
  const total = range.total ?? (res.contentLength === null ? null : offset + res.contentLength);
  if (range.end + 1 > opts.maxBytes || (total ?? 0) > opts.maxBytes) {
    res.body.destroy();
    await rm(partial, { force: true });
    throw new FetchError("too-large", opts.url, `image of ${total} bytes exceeds the cap of ${opts.maxBytes}`);
  }
  log.info("resuming download", { OFFSET: offset, BYTES_TOTAL: total ?? undefined });
  return stream(opts, file, partial, res, { hash, offset, total, resumed: true });
}

/** Where a transfer starts: the digest state and length of what the .partial already holds. */
interface Start {
  hash: Hash;
  offset: number;
  total: number | null;
  resumed: boolean;
}

async function stream(
  opts: DownloadOptions,
  file: string,
  partial: string,
  res: Response,
  start: Start,
): Promise<Transferred> {
  const { hash, offset, resumed } = start;
  let received = 0;
  const report = progressReporter(opts, file, start);
  // Created synchronously right after the response arrived, so reading the body starts at once.
  const out = createWriteStream(partial, { flags: offset > 0 ? "a" : "w", flush: true, highWaterMark: 1 << 20 });
  const writeBack = writeBehind(out);
  let lost: FetchError | null = null;
  const reclaim = reclaimer();
  try {
    // The body is read inside the generator rather than piped, so its errors do not tear down `out` with
    // bytes still buffered.
    await pipeline(async function* () {
      try {
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          hash.update(chunk);
          received += chunk.length;
          report(offset + received, false);
          reclaim(chunk.length);
          writeBack(chunk.length);
          yield chunk;
        }
      } catch (err) {
        // A broken connection ends the file normally, so every byte that arrived is on disk for the resume.
        if (!(err instanceof FetchError && err.retryable)) throw err;
        lost = err;
      }
    }, out);
    // flush: true makes the stream fsync before it closes; the rename must come after that.
    if (!out.closed) await new Promise<void>((resolve) => out.once("close", () => resolve()));
    if (lost !== null) throw lost;
  } catch (err) {
    // Keep what arrived when another attempt can continue it (network trouble, the caller cancelled); an
    // oversize body or local trouble (ENOSPC, EIO) leaves bytes nobody should trust or resume.
    if (opts.signal?.aborted === true && !(err instanceof FetchError)) {
      throw new FetchError("aborted", opts.url, "aborted", { cause: opts.signal.reason });
    }
    if (err instanceof FetchError && (err.retryable || err.kind === "aborted")) throw err;
    await rm(partial, { force: true });
    throw err instanceof FetchError ? err : asKataError(err, "store-failed");
  }
  report(offset + received, true);
  return { sha256: hash.digest("hex"), bytes: offset + received, resumed };
}

/** Progress to the caller every half second, and to the log every LOG_INTERVAL_MS. */
function progressReporter(opts: DownloadOptions, file: string, start: Start): (bytes: number, force: boolean) => void {
  const started = opts.clock.monotonicMs();
  let lastReport = Number.NEGATIVE_INFINITY;
  let lastLog = started;
  return (bytes, force) => {
    const now = opts.clock.monotonicMs();
    const toCaller = opts.onProgress !== undefined && (force || now - lastReport >= PROGRESS_INTERVAL_MS);
    const toLog = now - lastLog >= LOG_INTERVAL_MS;
    if (!toCaller && !toLog) return;
    const seconds = (now - started) / 1000;
    const progress = {
      file,
      bytes,
      total: start.total,
      bytesPerSecond: seconds > 0 ? Math.round((bytes - start.offset) / seconds) : 0,
    };
    if (toCaller) {
      lastReport = now;
      opts.onProgress?.(progress);
    }
    if (toLog) {
      lastLog = now;
      opts.log.info("download progress", {
        KATA_IMAGE_FILE: file,
        BYTES: bytes,
        BYTES_TOTAL: start.total ?? undefined,
        BYTES_PER_SECOND: progress.bytesPerSecond,
      });
    }
  };
}

/**
 * Starts writing the file back to disk every `everyBytes` while the download goes on, so the fsync before the
 * rename only has the tail left instead of the whole image (the kernel would otherwise hold it all as dirty
 * pages). At most one flush is in flight; a failing one is left to the final fsync to report.
 */
function writeBehind(out: WriteStream, everyBytes = 32 << 20): (bytes: number) => void {
  let fd: number | null = null;
  out.once("open", (opened: number) => {
    fd = opened;
  });
  let since = 0;
  let flushing = false;
  return (bytes) => {
    since += bytes;
    if (since < everyBytes || flushing || fd === null || out.closed) return;
    since = 0;
    flushing = true;
    fdatasync(fd, () => {
      flushing = false;
    });
  };
}

async function hashPrefix(path: string, length: number, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(path, { start: 0, end: length - 1, highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
  }
}

async function restart(partial: string): Promise<number> {
  await truncate(partial, 0).catch(() => undefined);
  return 0;
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw asKataError(err, "store-failed");
  }
}

/**
 * Removes `.<file>.partial` leftovers in `dir`, except those of the image file names in `keep` (downloads
 * that the caller still wants to resume). Returns the removed paths.
 */
export async function cleanupPartials(dir: string, keep: readonly string[] = []): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw asKataError(err, "store-failed");
  }
  const kept = new Set(keep.map((file) => `.${file}.partial`));
  const removed: string[] = [];
  for (const name of names) {
    if (!/^\..+\.partial$/.test(name) || kept.has(name)) continue;
    await rm(join(dir, name), { force: true });
    removed.push(join(dir, name));
  }
  return removed;
}
