// downloadImage against a real HTTP server on 127.0.0.1 and real files: every fault gives a typed error and
// leaves no final file; only a resumable .partial survives network failures, and cleanupPartials removes it.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { KataError } from "../../../src/errors.ts";
import {
  cleanupPartials,
  type DownloadOptions,
  downloadImage,
  MAX_RANGE_CONTINUATIONS,
  PositionalWriter,
  partialPath,
} from "../../../src/fetch/download.ts";
import { FetchError } from "../../../src/fetch/http.ts";
import { MAX_BYTES_IN_FLIGHT } from "../../../src/fetch/wire.ts";
import type { DownloadProgress } from "../../../src/status.ts";
import {
  type PublishedImage,
  publishRelease,
  type ReleaseServer,
  releasePath,
  sha256Hex,
  startReleaseServer,
} from "../../helpers/release-server.ts";
import { type FakeClock, fakeClock, listDir, memoryLogger, tempDir, trickleServer } from "./support.ts";

const SIZE = 256 * 1024;
const content = randomBytes(SIZE);
/** Larger than what a resume cuts off a .partial, so a resume after a crash still sends a Range. */
const LARGE_SIZE = 24 << 20;
const largeContent = randomBytes(LARGE_SIZE);
let releaseDir: string;
let server: ReleaseServer;
let image: PublishedImage;
let large: PublishedImage;
let path: string;
let store: string;
let clock: FakeClock;

beforeAll(async () => {
  releaseDir = tempDir("release");
  const published = await publishRelease(releaseDir, {
    images: [
      { version: "3.2.0", content },
      { version: "3.3.0", content: largeContent },
    ],
  });
  image = published.images[0] as PublishedImage;
  large = published.images[1] as PublishedImage;
  path = releasePath(image.file);
  server = await startReleaseServer(releaseDir);
});

afterAll(async () => {
  await server.close();
  rmSync(releaseDir, { recursive: true, force: true });
});

const rawServers: Server[] = [];
afterEach(async () => {
  server.clearFaults();
  server.requests.length = 0;
  if (store !== undefined) rmSync(store, { recursive: true, force: true });
  for (const raw of rawServers.splice(0)) await new Promise((r) => raw.close(() => r(undefined)));
});

/**
 * A server that answers every request with what `answer` writes, for responses the release server (node:http)
 * cannot send. Returns the image URL on it and the Range header of each request.
 */
async function rawServer(answer: (socket: Socket, range: string | null) => void): Promise<{
  url: string;
  ranges: (string | null)[];
}> {
  const ranges: (string | null)[] = [];
  const raw = createServer((socket) => {
    socket.on("error", () => undefined);
    let head = "";
    const onData = (data: Buffer): void => {
      head += data.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      socket.off("data", onData);
      const range = /\r\nRange: ([^\r]*)\r\n/i.exec(head)?.[1] ?? null;
      ranges.push(range);
      answer(socket, range);
    };
    socket.on("data", onData);
  });
  rawServers.push(raw);
  await new Promise<void>((resolve) => raw.listen(0, "127.0.0.1", () => resolve()));
  const address = raw.address();
  return {
    url: `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}${path}`,
    ranges,
  };
}

function options(overrides: Partial<DownloadOptions> = {}): DownloadOptions {
  store = tempDir("store");
  clock = fakeClock();
  return {
    url: `${server.url}kata-containers/${image.file}`,
    dest: join(store, image.file),
    tmpDir: store,
    expectedSha256: image.sha256,
    maxBytes: 1 << 20,
    connectTimeoutMs: 2000,
    idleTimeoutMs: 2000,
    retries: 3,
    clock,
    random: () => 0.5,
    log: memoryLogger(),
    ...overrides,
  };
}

async function failure(opts: DownloadOptions): Promise<KataError> {
  const err = await downloadImage(opts).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(KataError);
  expect(existsSync(opts.dest)).toBe(false);
  return err as KataError;
}

/** Bytes after a kept prefix that a resume cuts off as possibly unwritten (see dropUnsettledTail). */
const unsettledTail = (): Buffer => randomBytes(MAX_BYTES_IN_FLIGHT);
const fileRequests = (): { path: string; range: string | null }[] => server.requests.filter((r) => r.path === path);

test("downloads, verifies and renames into place, reporting progress", async () => {
  const progress: DownloadProgress[] = [];
  const opts = options({ onProgress: (p) => progress.push(p) });
  const got = await downloadImage(opts);
  expect(got).toEqual({ path: opts.dest, sha256: image.sha256, bytes: SIZE });
  expect(readFileSync(opts.dest).equals(content)).toBe(true);
  expect(listDir(store)).toEqual([image.file]);
  expect(progress.at(-1)).toMatchObject({ file: image.file, bytes: SIZE, total: SIZE });
  expect(fileRequests()).toEqual([{ path, range: null }]);
});

describe("resume", () => {
  test("a reset mid-body is resumed with Range and the digest is right", async () => {
    server.setFault(path, { kind: "reset", afterBytes: 100_000 }, 1);
    const opts = options();
    const got = await downloadImage(opts);
    expect(got.sha256).toBe(image.sha256);
    expect(sha256Hex(readFileSync(opts.dest))).toBe(image.sha256);
    const [first, second, ...rest] = fileRequests();
    expect(rest).toEqual([]);
    expect(first?.range).toBeNull();
    const offset = Number(/^bytes=(\d+)-$/.exec(second?.range ?? "")?.[1]);
    expect(offset).toBeGreaterThan(0);
    expect(offset).toBeLessThanOrEqual(100_000);
    expect(clock.sleeps).toHaveLength(1);
  });

  test("a server without Range support gets the whole file again", async () => {
    server.setFault(path, { kind: "no-range" });
    server.setFault(path, { kind: "truncate", afterBytes: 50_000, framing: "length" }, 1);
    const opts = options();
    await downloadImage(opts);
    expect(sha256Hex(readFileSync(opts.dest))).toBe(image.sha256);
    const [first, second] = fileRequests();
    expect(first?.range).toBeNull();
    expect(second?.range).toMatch(/^bytes=\d+-$/);
    expect(listDir(store)).toEqual([image.file]);
  });

  // A leftover .partial loses its last MAX_BYTES_IN_FLIGHT bytes before the resume, hence the sizes below.
  test("a leftover .partial longer than the file (416) is discarded and downloaded again", async () => {
    const opts = options();
    writeFileSync(partialPath(store, image.file), randomBytes(SIZE + 10 + MAX_BYTES_IN_FLIGHT));
    await downloadImage(opts);
    expect(sha256Hex(readFileSync(opts.dest))).toBe(image.sha256);
    expect(fileRequests().map((r) => r.range)).toEqual([`bytes=${SIZE + 10}-`, null]);
    expect(listDir(store)).toEqual([image.file]);
  });

  test("a leftover .partial of other content is discarded and downloaded again", async () => {
    const opts = options();
    writeFileSync(partialPath(store, image.file), randomBytes(1000 + MAX_BYTES_IN_FLIGHT));
    await downloadImage(opts);
    expect(sha256Hex(readFileSync(opts.dest))).toBe(image.sha256);
    expect(fileRequests().map((r) => r.range)).toEqual(["bytes=1000-", null]);
  });

  test("a leftover .partial with a hole in its tail (writes cut short by a crash) resumes before the hole", async () => {
    const base = options({
      url: `${server.url}kata-containers/${large.file}`,
      expectedSha256: large.sha256,
      maxBytes: 64 << 20,
    });
    const opts = { ...base, dest: join(store, large.file) };
    // The true first 20 MiB, except that the writes of 17-20 MiB never completed: zeros, as a crash leaves them.
    const kept = Buffer.from(largeContent.subarray(0, 20 << 20));
    kept.fill(0, 17 << 20);
    writeFileSync(partialPath(store, large.file), kept);
    const got = await downloadImage(opts);
    expect(got).toEqual({ path: opts.dest, sha256: large.sha256, bytes: LARGE_SIZE });
    expect(readFileSync(opts.dest).equals(largeContent)).toBe(true);
    const ranges = server.requests.filter((r) => r.path === releasePath(large.file)).map((r) => r.range);
    expect(ranges).toEqual([`bytes=${(20 << 20) - MAX_BYTES_IN_FLIGHT}-`]);
    expect(listDir(store)).toEqual([large.file]);
  });

  test("a server answering ranges short of the end is asked for the next one until the image is whole", async () => {
    const base = options({
      url: `${server.url}kata-containers/${large.file}`,
      expectedSha256: large.sha256,
      maxBytes: 64 << 20,
    });
    const opts = { ...base, dest: join(store, large.file) };
    writeFileSync(partialPath(store, large.file), largeContent.subarray(0, 20 << 20));
    server.setFault(releasePath(large.file), { kind: "short-ranges", bytes: 1 << 20 });
    const got = await downloadImage(opts);
    expect(got).toEqual({ path: opts.dest, sha256: large.sha256, bytes: LARGE_SIZE });
    expect(readFileSync(opts.dest).equals(largeContent)).toBe(true);
    // From the kept prefix to the end in 1 MiB steps, never from the start again.
    const from = (20 << 20) - MAX_BYTES_IN_FLIGHT;
    const steps = Array.from({ length: (LARGE_SIZE - from) >> 20 }, (_, i) => `bytes=${from + (i << 20)}-`);
    expect(server.requests.filter((r) => r.path === releasePath(large.file)).map((r) => r.range)).toEqual(steps);
    const log = (opts.log as ReturnType<typeof memoryLogger>).records;
    expect(log.filter((r) => r.message === "resuming download")).toHaveLength(1);
    expect(log.filter((r) => r.message === "continuing with the next range")).toHaveLength(steps.length - 1);
  });

  test("ranges that stay short past the bound end in a download from the start", async () => {
    const opts = options({ maxBytes: SIZE });
    // 5000 bytes of the image are kept, then 1 byte comes per range; the tail after them is cut off first
    // (what a crash may have left unwritten, cut off before the resume).
    writeFileSync(partialPath(store, image.file), Buffer.concat([content.subarray(0, 5000), unsettledTail()]));
    server.setFault(path, { kind: "short-ranges", bytes: 1 });
    await downloadImage(opts);
    expect(sha256Hex(readFileSync(opts.dest))).toBe(image.sha256);
    const ranges = fileRequests().map((r) => r.range);
    expect(ranges).toHaveLength(1 + MAX_RANGE_CONTINUATIONS + 1);
    expect(ranges.at(-2)).toBe(`bytes=${5000 + MAX_RANGE_CONTINUATIONS}-`);
    expect(ranges.at(-1)).toBeNull();
    expect(listDir(store)).toEqual([image.file]);
  });

  test("short ranges to the end over a prefix of other content fail the digest once, then start over", async () => {
    const again = options();
    const wrong = Buffer.from(content.subarray(0, 200_000));
    wrong[10] = (wrong[10] ?? 0) ^ 0xff;
    writeFileSync(partialPath(store, image.file), Buffer.concat([wrong, unsettledTail()]));
    server.setFault(path, { kind: "short-ranges", bytes: 16 << 10 });
    await downloadImage(again);
    expect(sha256Hex(readFileSync(again.dest))).toBe(image.sha256);
    const second = fileRequests().map((r) => r.range);
    expect(second.slice(0, -1)).toEqual(
      Array.from({ length: Math.ceil((SIZE - 200_000) / (16 << 10)) }, (_, i) => `bytes=${200_000 + i * (16 << 10)}-`),
    );
    expect(second.at(-1)).toBeNull();
  });

  test("a 206 body longer than its Content-Range fails too-large before the .partial passes the cap", async () => {
    // Announces 10000 bytes from the offset asked for, then sends 99990: without a check the .partial of 90000
    // bytes grows to 189990 with a cap of 100000.
    const raw = await rawServer((socket, range) => {
      const start = Number(/^bytes=(\d+)-$/.exec(range ?? "")?.[1] ?? 0);
      const body = randomBytes(99_990);
      socket.write(`HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ${start}-${start + 9999}/*\r\n`);
      socket.write(`Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n`);
      socket.end(Buffer.concat([body, Buffer.from("\r\n0\r\n\r\n")]));
    });
    const opts = options({ url: raw.url, maxBytes: 100_000, retries: 3 });
    // 90000 bytes are kept once the tail that may not have been written is cut off.
    writeFileSync(partialPath(store, image.file), randomBytes(90_000 + MAX_BYTES_IN_FLIGHT));
    const err = await failure(opts);
    expect(err).toMatchObject({ kind: "too-large", code: "fetch-too-large", retryable: false });
    expect(err.message).toMatch(/more than the bytes 90000-99999 its Content-Range announced/);
    expect(raw.ranges).toEqual(["bytes=90000-"]);
    expect(listDir(store)).toEqual([]);
  });

  test("a leftover .partial shorter than what may have been in flight is downloaded from the start", async () => {
    const opts = options();
    writeFileSync(partialPath(store, image.file), content.subarray(0, 100_000));
    await downloadImage(opts);
    expect(sha256Hex(readFileSync(opts.dest))).toBe(image.sha256);
    expect(fileRequests().map((r) => r.range)).toEqual([null]);
  });
});

describe("retries", () => {
  test("Retry-After of 503 and 429 is honoured", async () => {
    server.setFault(path, { kind: "status", status: 429, retryAfter: "3" }, 1);
    server.setFault(path, { kind: "status", status: 503, retryAfter: "7" }, 1);
    await downloadImage(options());
    expect(clock.sleeps).toEqual([7000, 3000]);
    expect(fileRequests()).toHaveLength(3);
  });

  test("500 without Retry-After backs off exponentially with jitter", async () => {
    server.setFault(path, { kind: "status", status: 500 }, 3);
    await downloadImage(options());
    // random() = 0.5: half the ceiling fixed plus a quarter; ceilings 1 s, 2 s, 4 s.
    expect(clock.sleeps).toEqual([750, 1500, 3000]);
  });

  test("a refused connection is retried and succeeds once the server listens again", async () => {
    await server.refuse();
    const slept: number[] = [];
    const base = fakeClock();
    const restarting = {
      ...base,
      sleep: async (ms: number) => {
        slept.push(ms);
        await server.accept();
      },
    };
    const opts = options({ clock: restarting });
    expect((await downloadImage(opts)).sha256).toBe(image.sha256);
    expect(slept).toEqual([750]);
    expect(fileRequests()).toHaveLength(1);
  });

  test("when retries run out the error is typed and only the resumable .partial stays", async () => {
    server.setFault(path, { kind: "reset", afterBytes: 10_000 });
    const opts = options({ retries: 2 });
    const err = await failure(opts);
    expect(err).toBeInstanceOf(FetchError);
    expect(err.code).toBe("fetch-failed");
    expect((err as FetchError).kind).toBe("reset");
    expect(fileRequests()).toHaveLength(3);
    expect(listDir(store)).toEqual([`.${image.file}.partial`]);
    expect(await cleanupPartials(store)).toEqual([partialPath(store, image.file)]);
    expect(listDir(store)).toEqual([]);
  });

  test("a server that speaks broken HTTP is asked once: it would answer the same again", async () => {
    const raw = await rawServer((socket) => socket.end("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nabcdef"));
    const err = await failure(options({ url: raw.url, retries: 3 }));
    expect(err).toMatchObject({ kind: "protocol", code: "fetch-failed", retryable: false });
    expect(err.remedy).toMatch(/does not speak valid HTTP.*\[source\] url/);
    expect(raw.ranges).toEqual([null]);
    expect(clock.sleeps).toEqual([]);
    expect(listDir(store)).toEqual([]);
  });

  test("bad chunk framing mid-body is not retried and leaves no partial", async () => {
    const raw = await rawServer((socket) =>
      socket.end("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nnot-hex\r\n"),
    );
    const err = await failure(options({ url: raw.url, retries: 3 }));
    expect(err).toMatchObject({ kind: "protocol", retryable: false });
    expect(raw.ranges).toEqual([null]);
    expect(clock.sleeps).toEqual([]);
    expect(listDir(store)).toEqual([]);
  });
});

describe("faults", () => {
  const cases: { name: string; arrange: () => void | Promise<void>; code: string; kind?: string; status?: number }[] = [
    {
      name: "404",
      arrange: () => server.setFault(path, { kind: "status", status: 404 }),
      code: "fetch-http-status",
      status: 404,
    },
    {
      name: "500 for good",
      arrange: () => server.setFault(path, { kind: "status", status: 500 }),
      code: "fetch-http-status",
      status: 500,
    },
    {
      name: "503 with Retry-After for good",
      arrange: () => server.setFault(path, { kind: "status", status: 503, retryAfter: "1" }),
      code: "fetch-http-status",
      status: 503,
    },
    { name: "connection refused", arrange: () => server.refuse(), code: "fetch-failed", kind: "connect" },
    {
      name: "reset mid-body",
      arrange: () => server.setFault(path, { kind: "reset", afterBytes: 1000 }),
      code: "fetch-failed",
      kind: "reset",
    },
    {
      name: "truncated with Content-Length",
      arrange: () => server.setFault(path, { kind: "truncate", afterBytes: 1000, framing: "length" }),
      code: "fetch-failed",
      kind: "reset",
    },
    {
      name: "truncated chunked body (no Content-Length)",
      arrange: () => server.setFault(path, { kind: "truncate", afterBytes: 1000, framing: "chunked" }),
      code: "fetch-failed",
      kind: "reset",
    },
    {
      name: "truncated close-delimited body (no Content-Length): only the digest can tell",
      arrange: () => server.setFault(path, { kind: "truncate", afterBytes: 1000, framing: "close" }),
      code: "digest-mismatch",
    },
    {
      name: "stall before headers",
      arrange: () => server.setFault(path, { kind: "stall" }),
      code: "fetch-timeout",
      kind: "timeout",
    },
    {
      name: "stall mid-body",
      arrange: () => server.setFault(path, { kind: "stall", afterBytes: 1000 }),
      code: "fetch-timeout",
      kind: "timeout",
    },
    {
      name: "redirect loop",
      arrange: () => {
        server.setFault(path, { kind: "redirect", to: "/elsewhere.raw" });
        server.setFault("/elsewhere.raw", { kind: "redirect", to: path });
      },
      code: "fetch-failed",
      kind: "redirect",
    },
    {
      name: "endless redirects",
      arrange: () => {
        for (let hop = 0; hop < 7; hop++) server.setFault(`/hop${hop}`, { kind: "redirect", to: `/hop${hop + 1}` });
        server.setFault(path, { kind: "redirect", to: "/hop0" });
      },
      code: "fetch-failed",
      kind: "redirect",
    },
    {
      name: "oversize with Content-Length",
      arrange: () => server.setFault(path, { kind: "oversize", bytes: 2 << 20, contentLength: true }),
      code: "fetch-too-large",
      kind: "too-large",
    },
    {
      name: "oversize without Content-Length (bytes counted)",
      arrange: () => server.setFault(path, { kind: "oversize", bytes: 2 << 20, contentLength: false }),
      code: "fetch-too-large",
      kind: "too-large",
    },
    { name: "corrupted body", arrange: () => server.setFault(path, { kind: "corrupt" }), code: "digest-mismatch" },
  ];

  test.each(cases)("$name: typed error, no final file, nothing left after cleanup", async (c) => {
    await c.arrange();
    const opts = options({ retries: 0, idleTimeoutMs: 300 });
    try {
      const err = await failure(opts);
      expect(err.code).toBe(c.code);
      expect(err.remedy).toBeTruthy();
      if (c.kind !== undefined) expect((err as FetchError).kind).toBe(c.kind);
      if (c.status !== undefined) expect((err as FetchError).status).toBe(c.status);
      await cleanupPartials(store);
      expect(listDir(store)).toEqual([]);
    } finally {
      await server.accept().catch(() => undefined);
    }
  });

  test("a redirect to the real file is followed", async () => {
    server.setFault("/moved.raw", { kind: "redirect", to: path });
    const opts = options({ url: `${server.url}moved.raw` });
    await downloadImage(opts);
    expect(sha256Hex(readFileSync(opts.dest))).toBe(image.sha256);
  });

  test("a wrong expected digest fails with digest-mismatch and removes the partial", async () => {
    const err = await failure(options({ expectedSha256: "0".repeat(64) }));
    expect(err.code).toBe("digest-mismatch");
    expect(listDir(store)).toEqual([]);
  });

  test("an AbortSignal stops the download and keeps the resumable partial", async () => {
    server.setFault(path, { kind: "stall", afterBytes: 5000 });
    const controller = new AbortController();
    const opts = options({ signal: controller.signal, idleTimeoutMs: 10_000 });
    const pending = failure(opts);
    const partial = partialPath(store, image.file);
    while (!existsSync(partial) || statSync(partial).size < 5000) await new Promise((r) => setTimeout(r, 10));
    controller.abort();
    const err = await pending;
    expect((err as FetchError).kind).toBe("aborted");
    expect(listDir(store)).toEqual([`.${image.file}.partial`]);
  });
});

test("cleanupPartials keeps the partials it is told to keep", async () => {
  const dir = tempDir("cleanup");
  try {
    for (const name of [".a.raw.partial", ".b.raw.partial", "c.raw", ".hidden"]) writeFileSync(join(dir, name), "x");
    expect(await cleanupPartials(dir, ["b.raw"])).toEqual([join(dir, ".a.raw.partial")]);
    expect(listDir(dir)).toEqual([".b.raw.partial", ".hidden", "c.raw"]);
    expect(await cleanupPartials(join(dir, "missing"))).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe("write-behind", () => {
  test("a failed background fdatasync fails the download, though the final one would succeed", async () => {
    // Linux reports a writeback error to one fsync per open file: had the background one swallowed it, the final
    // fdatasync would pass and an image verified from memory would be renamed over bytes that never landed.
    const dir = tempDir("write-behind");
    const handle = await open(join(dir, "image.partial"), "w");
    const realDatasync = handle.datasync.bind(handle);
    let calls = 0;
    handle.datasync = () => {
      calls += 1;
      return calls === 1
        ? Promise.reject(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }))
        : realDatasync();
    };
    const writer = new PositionalWriter(handle, 0, 64 << 10);
    const chunk = randomBytes(32 << 10);
    try {
      for (let i = 0; i < 8; i++) await writer.write(chunk).catch(() => undefined);
      await expect(writer.finish()).rejects.toThrow("EIO");
      expect(calls).toBe(1); // the final fdatasync was not even tried
    } finally {
      await writer.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("minimum speed", () => {
  /** Time as the download sees it, 1000 times faster than real: LOW_SPEED_WINDOW_MS passes in 60 ms. */
  const fastClock = () => {
    const t0 = performance.now();
    return { ...fakeClock(), monotonicMs: () => (performance.now() - t0) * 1000 };
  };

  test("a server trickling bytes under the minimum fails as a retryable timeout; the partial stays", async () => {
    // 64 bytes every 10 ms: never idle, and (at the clock's pace) about 6 bytes per second.
    const trickle = await trickleServer(
      `HTTP/1.1 200 OK\r\nContent-Length: ${SIZE}\r\n\r\n`,
      content.subarray(0, 64),
      10,
    );
    try {
      const opts = options({
        url: `${trickle.url}${image.file}`,
        retries: 0,
        minBytesPerSecond: 1024,
        clock: fastClock(),
      });
      const err = await failure(opts);
      expect(err).toMatchObject({ name: "FetchError", kind: "timeout", retryable: true });
      expect(err.message).toMatch(/slower than 1024 bytes\/s for 60 s \(\d+ bytes\/s\)/);
      expect(statSync(partialPath(store, image.file)).size).toBeGreaterThan(0); // kept for the resume
    } finally {
      await trickle.close();
    }
  });

  test("a server above the minimum is not disturbed by it", async () => {
    const got = await downloadImage(options({ minBytesPerSecond: 1024, clock: fastClock() }));
    expect(got.sha256).toBe(image.sha256);
  });
});
