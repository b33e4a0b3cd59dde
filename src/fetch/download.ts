// Downloads one image: streamed into `<tmpDir>/.<file>.partial` with the SHA-256 computed as bytes arrive,
// resumed with HTTP Range after an interruption, verified, fsynced and only then renamed into place.
import type { Hash } from "node:crypto";
import { createReadStream, write } from "node:fs";
import { type FileHandle, mkdir, open, readdir, rename, rm, stat, truncate } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Clock, Random } from "../clock.ts";
import { asKataError, KataError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { sha256 } from "../sha256.ts";
import type { DownloadProgress } from "../status.ts";
import { fsyncDir } from "../store/fsutil.ts";
import { FetchError, httpGet, parseContentRange, type Response } from "./http.ts";
import { withRetries } from "./retry.ts";
import { MAX_BYTES_IN_FLIGHT } from "./wire.ts";

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
  /**
   * Fewer bytes than this per second over LOW_SPEED_WINDOW_MS fail the transfer as a (retryable) timeout: a
   * server trickling a byte now and then never trips the idle timeout. 0 or absent: no minimum.
   */
  minBytesPerSecond?: number;
}

export interface Downloaded {
  path: string;
  sha256: string;
  bytes: number;
}

const PROGRESS_INTERVAL_MS = 500;
export const LOW_SPEED_WINDOW_MS = 60_000;
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
  await dropUnsettledTail(partial, log);

  const policy = { ...opts, log };
  const got = await withRetries(`download of ${file}`, policy, async () => {
    const first = await rangesToEnd(opts, file, partial, log);
    if (first.sha256 === expected || !first.resumed) return first;
    // The bytes kept from an earlier run belonged to other content (republished file, torn write), or a server
    // kept answering ranges too short to finish: start over, without a Range.
    log.warning("resumed download does not match its digest, downloading again from the start");
    await rm(partial, { force: true });
    return digested(await transfer(opts, file, partial, log));
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
  /** The digest of the .partial so far, not finalised: a further range may still be added to it. */
  hash: Hash;
  bytes: number;
  /** The whole file's length when the server said it, so a range that ended short of it can be continued. */
  total: number | null;
  /** Some bytes came from a .partial left by an earlier attempt. */
  resumed: boolean;
}

interface Digested {
  sha256: string;
  bytes: number;
  resumed: boolean;
}

/**
 * Continuations after a 206 that ended before the file did. Servers may answer `bytes=N-` with less than the rest
 * (RFC 9110 allows it; some CDNs cap ranges); past this many, downloading from the start is the better bet.
 */
export const MAX_RANGE_CONTINUATIONS = 1000;

/** Transfers into the .partial, asking for the next range while a 206 left the file short of its end. */
async function rangesToEnd(opts: DownloadOptions, file: string, partial: string, log: Logger): Promise<Digested> {
  let got = await transfer(opts, file, partial, log);
  for (let n = 0; n < MAX_RANGE_CONTINUATIONS && got.total !== null && got.bytes < got.total; n++) {
    got = await transfer(opts, file, partial, log, got);
  }
  return digested(got);
}

function digested(got: Transferred): Digested {
  return { sha256: got.hash.digest("hex"), bytes: got.bytes, resumed: got.resumed };
}

/**
 * One HTTP exchange into the .partial. Network errors leave the .partial for the next attempt. `before` is the
 * exchange this one continues in the same attempt: its digest goes on, instead of reading the .partial again.
 */
async function transfer(
  opts: DownloadOptions,
  file: string,
  partial: string,
  log: Logger,
  before?: Transferred,
): Promise<Transferred> {
  let offset = await sizeOf(partial);
  if (offset > opts.maxBytes) offset = await restart(partial);
  const continued = before !== undefined && before.bytes === offset;
  const hash = continued ? before.hash : sha256();
  if (offset > 0 && !continued) await hashPrefix(partial, offset, hash);

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
    return stream(opts, file, partial, res, {
      hash,
      offset: 0,
      total: res.contentLength,
      rangeEnd: null,
      resumed: false,
    });
  }

  const range = res.status === 206 ? parseContentRange(res.headers["content-range"]) : null;
  if (range === null || range.start !== offset) {
    log.info("server did not resume the download, starting from the beginning", { HTTP_STATUS: res.status });
    if (res.status === 200) {
      return stream(opts, file, partial, res, {
        hash: sha256(),
        offset: 0,
        total: res.contentLength,
        rangeEnd: null,
        resumed: false,
      });
    }
    // A 206 for some other range than asked: nothing to build on.
    res.body.discard();
    await restart(partial);
    return transfer(opts, file, partial, log);
  }
  const total = range.total ?? (res.contentLength === null ? null : offset + res.contentLength);
  if (range.end + 1 > opts.maxBytes || (total ?? 0) > opts.maxBytes) {
    res.body.discard();
    await rm(partial, { force: true });
    throw new FetchError("too-large", opts.url, `image of ${total} bytes exceeds the cap of ${opts.maxBytes}`);
  }
  if (continued) log.debug("continuing with the next range", { OFFSET: offset, BYTES_TOTAL: total ?? undefined });
  else log.info("resuming download", { OFFSET: offset, BYTES_TOTAL: total ?? undefined });
  return stream(opts, file, partial, res, { hash, offset, total, rangeEnd: range.end + 1, resumed: true });
}

/** Where a transfer starts: the digest state and length of what the .partial already holds. */
interface Start {
  hash: Hash;
  offset: number;
  total: number | null;
  /** For a 206: where its Content-Range says the body ends (exclusive). */
  rangeEnd: number | null;
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
  // http.ts caps this response only: the .partial is this body on top of `offset`, and a 206 must stop where its
  // Content-Range ends. Past either, the bytes would grow the .partial without bound.
  const limit = Math.min(opts.maxBytes, start.rangeEnd ?? Number.POSITIVE_INFINITY);
  const report = progressReporter(opts, file, start);
  const tooSlow = lowSpeedCheck(opts);
  // Where this transfer starts, before its first chunk: a listener counting the difference between reports
  // (the download_bytes metric) then counts every byte, the first chunk's too.
  report(offset, true);
  let out: FileHandle;
  try {
    // Not "a": positional writes need a file opened without O_APPEND.
    out = await open(partial, offset > 0 ? "r+" : "w");
  } catch (err) {
    res.body.discard();
    throw asKataError(err, "store-failed");
  }
  const writer = new PositionalWriter(out, offset);
  let lost: FetchError | null = null;
  try {
    try {
      // The write is queued on the thread pool first and the chunk hashed here, on the event loop, while it runs:
      // hashing first left the pool idle for the 0.5 ms a 1 MiB chunk takes (measured: about 6% slower overall).
      await res.body.read((chunk) => {
        received += chunk.length;
        if (offset + received > limit) throw overrun(opts, start);
        const written = writer.write(chunk);
        hash.update(chunk);
        report(offset + received, false);
        tooSlow(chunk.length);
        return written;
      });
    } catch (err) {
      // A broken connection ends the file normally, so every byte that arrived is on disk for the resume.
      if (!(err instanceof FetchError && err.retryable)) throw err;
      lost = err;
    }
    await writer.finish(); // fdatasync: the rename must come after the bytes are on disk
    if (lost !== null) throw lost;
  } catch (err) {
    await writer.close();
    // Keep what arrived when another attempt can continue it (network trouble, the caller cancelled); an
    // oversize body or local trouble (ENOSPC, EIO) leaves bytes nobody should trust or resume.
    if (opts.signal?.aborted === true && !(err instanceof FetchError)) {
      throw new FetchError("aborted", opts.url, "aborted", { cause: opts.signal.reason });
    }
    if (err instanceof FetchError && (err.retryable || err.kind === "aborted")) throw err;
    await rm(partial, { force: true });
    throw err instanceof FetchError ? err : asKataError(err, "store-failed");
  }
  await writer.close();
  report(offset + received, true);
  return { hash, bytes: offset + received, total: start.total, resumed };
}

/** Why a body ran past the cap or the end of its Content-Range. */
function overrun(opts: DownloadOptions, start: Start): FetchError {
  if (start.rangeEnd === null || start.rangeEnd > opts.maxBytes) {
    return new FetchError("too-large", opts.url, `image exceeds the cap of ${opts.maxBytes} bytes`);
  }
  return new FetchError(
    "too-large",
    opts.url,
    `the server sent more than the bytes ${start.offset}-${start.rangeEnd - 1} its Content-Range announced`,
    { remedy: "the release server answers Range requests wrongly; the download starts over on the next pass" },
  );
}

/**
 * Writes each chunk at its own position as soon as it arrives, without waiting for the writes before it: the
 * thread pool then always has the next write ready instead of idling until the event loop, busy hashing, gets
 * round to queueing it (measured: serial writes held a 512 MiB download to about 0.85x curl).
 * Every `syncEveryBytes` it also starts writing the file back to disk while the download goes on, so the
 * fdatasync at the end only has the tail left instead of the whole image (the kernel would otherwise hold it all
 * as dirty pages). At most one write-back is in flight; a failing one fails the download.
 *
 * Writes may complete out of order, so a crash can leave a hole before the end of the .partial, no further back
 * than the bytes in flight: dropUnsettledTail() cuts that much off before a resume. A hole that survives anyway
 * (the machine lost power before the data reached the disk) fails the digest and the download starts over.
 */
export class PositionalWriter {
  readonly #file: FileHandle;
  readonly #syncEvery: number;
  #position: number;
  #inFlight = new Set<Promise<void>>();
  #failure: Error | null = null;
  #sinceSync = 0;
  #syncing: Promise<void> | null = null;
  #closed = false;

  constructor(file: FileHandle, position: number, syncEveryBytes = 32 << 20) {
    this.#file = file;
    this.#position = position;
    this.#syncEvery = syncEveryBytes;
  }

  /** Resolves when this chunk is written; the chunk must not change until then. */
  write(chunk: Buffer): Promise<void> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    const at = this.#position;
    this.#position += chunk.length;
    const written = this.#writeAt(chunk, at).then(
      () => {
        this.#inFlight.delete(written);
        this.#wroteBack(chunk.length);
      },
      (err: unknown) => {
        this.#inFlight.delete(written);
        this.#failure ??= err instanceof Error ? err : new Error(String(err));
        throw this.#failure;
      },
    );
    this.#inFlight.add(written);
    return written;
  }

  /** fs.write with a callback: about half the per-call cost of FileHandle.write, which adds up over 5000 calls. */
  #writeAt(chunk: Buffer, position: number, done = 0): Promise<void> {
    return new Promise((resolve, reject) => {
      write(this.#file.fd, chunk, done, chunk.length - done, position + done, (err, bytesWritten) => {
        if (err !== null) {
          reject(err);
        } else if (done + bytesWritten < chunk.length) {
          this.#writeAt(chunk, position, done + bytesWritten).then(resolve, reject); // a short write: the rest
        } else {
          resolve();
        }
      });
    });
  }

  #wroteBack(bytes: number): void {
    this.#sinceSync += bytes;
    if (this.#sinceSync < this.#syncEvery || this.#syncing !== null) return;
    this.#sinceSync = 0;
    const clear = (): void => {
      this.#syncing = null;
    };
    // A failed write-back must fail the download: Linux reports a writeback error once per open file, so the
    // final fdatasync would succeed after it, and an image verified from memory would be renamed over lost bytes.
    this.#syncing = this.#file.datasync().then(clear, (err: unknown) => {
      this.#failure ??= err instanceof Error ? err : new Error(String(err));
      clear();
    });
  }

  async #settled(): Promise<void> {
    await Promise.allSettled([...this.#inFlight]);
    await this.#syncing;
  }

  /** Waits for every write, then makes the file's data durable. */
  async finish(): Promise<void> {
    await this.#settled();
    if (this.#failure !== null) throw this.#failure;
    await this.#file.datasync();
  }

  /** Closes the file once nothing is in flight; safe to call twice and after a failure. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#settled();
    await this.#file.close();
  }
}

/**
 * Counts bytes per LOW_SPEED_WINDOW_MS and throws a retryable timeout when a whole window brought fewer than the
 * minimum (like curl's --speed-limit/--speed-time). Checked as chunks arrive; no chunk at all is the idle timeout's.
 */
function lowSpeedCheck(opts: DownloadOptions): (bytes: number) => void {
  const min = opts.minBytesPerSecond ?? 0;
  if (min <= 0) return () => undefined;
  const needed = (min * LOW_SPEED_WINDOW_MS) / 1000;
  let windowStart = opts.clock.monotonicMs();
  let windowBytes = 0;
  return (bytes) => {
    windowBytes += bytes;
    const now = opts.clock.monotonicMs();
    if (now - windowStart < LOW_SPEED_WINDOW_MS) return;
    if (windowBytes < needed) {
      const rate = Math.round((windowBytes * 1000) / (now - windowStart));
      throw new FetchError(
        "timeout",
        opts.url,
        `slower than ${min} bytes/s for ${LOW_SPEED_WINDOW_MS / 1000} s (${rate} bytes/s)`,
        { remedy: "the mirror is too slow; the download resumes on the next attempt ([fetch] min_bytes_per_second)" },
      );
    }
    windowStart = now;
    windowBytes = 0;
  };
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

async function hashPrefix(path: string, length: number, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(path, { start: 0, end: length - 1, highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
  }
}

/**
 * Cuts a .partial found at the start of a download back by what an earlier run may still have had in flight,
 * so a hole left by a crash is downloaded again instead of failing the digest of the whole image. Retries within
 * one download keep every byte: PositionalWriter waits for its writes before a transfer ends.
 */
async function dropUnsettledTail(partial: string, log: Logger): Promise<void> {
  const size = await sizeOf(partial);
  if (size === 0) return;
  const keep = Math.max(0, size - MAX_BYTES_IN_FLIGHT);
  await truncate(partial, keep);
  log.info("found a partial download, resuming before its last writes", { BYTES: size, OFFSET: keep });
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
