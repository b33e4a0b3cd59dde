// Backoff and retry decisions, and the small parsers of the HTTP client, without I/O.
import { describe, expect, test } from "vitest";
import { backoffDelay } from "../../../src/clock.ts";
import { KataError } from "../../../src/errors.ts";
import { FetchError, parseContentRange, parseRetryAfter } from "../../../src/fetch/http.ts";
import { FETCH_BACKOFF, type RetryPolicy, retryDelay, withRetries } from "../../../src/fetch/retry.ts";
import { fileUrl, manifestUrl, sourceDirectory } from "../../../src/fetch/source.ts";
import { fakeClock, memoryLogger } from "../../integration/fetch/support.ts";

const policy = (random = 0.5): RetryPolicy => ({
  retries: 3,
  clock: fakeClock(),
  random: () => random,
  log: memoryLogger(),
});
const status = (code: number, retryAfterMs: number | null = null): FetchError =>
  new FetchError("status", "http://x/", `HTTP ${code}`, { status: code, retryAfterMs });

describe("backoffDelay", () => {
  test("doubles per attempt, stays within [ceiling/2, ceiling] and is capped", () => {
    expect([0, 1, 2, 3].map((n) => backoffDelay(n, () => 0, FETCH_BACKOFF))).toEqual([500, 1000, 2000, 4000]);
    expect([0, 1, 2, 3].map((n) => backoffDelay(n, () => 1, FETCH_BACKOFF))).toEqual([1000, 2000, 4000, 8000]);
    expect(backoffDelay(20, () => 1, FETCH_BACKOFF)).toBe(60_000);
  });
});

describe("retryDelay", () => {
  const cases: [string, unknown, number | null][] = [
    ["503 with Retry-After waits as asked", status(503, 9000), 9000],
    ["429 with Retry-After waits as asked", status(429, 2000), 2000],
    ["500 backs off", status(500), 750],
    ["408 backs off", status(408), 750],
    ["404 is final", status(404), null],
    ["403 is final", status(403), null],
    ["a reset backs off", new FetchError("reset", "http://x/", "reset"), 750],
    ["a timeout backs off", new FetchError("timeout", "http://x/", "slow"), 750],
    ["refused backs off", new FetchError("connect", "http://x/", "refused"), 750],
    ["too large is final", new FetchError("too-large", "http://x/", "big"), null],
    ["a redirect loop is final", new FetchError("redirect", "http://x/", "loop"), null],
    ["an abort is final", new FetchError("aborted", "http://x/", "aborted"), null],
    ["a request that cannot be made is final", new FetchError("invalid", "ftp://x/", "unsupported URL scheme"), null],
    ["a digest mismatch is final", new KataError("digest-mismatch", "bad"), null],
    ["Retry-After beyond 10 minutes is left to the next pass", status(503, 3_600_000), null],
  ];
  test.each(cases)("%s", (_name, err, expected) => {
    expect(retryDelay(err, 0, policy())).toBe(expected);
  });
});

describe("withRetries", () => {
  test("retries transient failures and sleeps on the injected clock", async () => {
    const p = policy();
    let calls = 0;
    const result = await withRetries("thing", p, async (n) => {
      calls++;
      if (n < 2) throw status(503, 1000 * (n + 1));
      return "done";
    });
    expect(result).toBe("done");
    expect(calls).toBe(3);
    expect((p.clock as ReturnType<typeof fakeClock>).sleeps).toEqual([1000, 2000]);
  });

  test("gives up after `retries` extra attempts with the last error", async () => {
    const p = { ...policy(), retries: 2 };
    let calls = 0;
    const failing = withRetries("thing", p, async () => {
      calls++;
      throw status(500);
    });
    await expect(failing).rejects.toMatchObject({ status: 500 });
    expect(calls).toBe(3);
  });

  test("cancelled while waiting to retry: an aborted FetchError, not the failure it was waiting after", async () => {
    const controller = new AbortController();
    const p: RetryPolicy = {
      ...policy(),
      signal: controller.signal,
      // The real clock's sleep rejects with the signal's reason when it fires.
      clock: { ...fakeClock(), sleep: (_ms, signal) => Promise.reject(signal?.reason) },
    };
    let calls = 0;
    const failing = withRetries("download of x.raw", p, async () => {
      calls++;
      controller.abort();
      throw status(503);
    });
    await expect(failing).rejects.toMatchObject({ name: "FetchError", kind: "aborted", retryable: false });
    await expect(failing).rejects.toThrow("download of x.raw: aborted while waiting to retry");
    expect(calls).toBe(1);
  });

  test("a sleep that fails for another reason passes that failure on", async () => {
    const p: RetryPolicy = { ...policy(), clock: { ...fakeClock(), sleep: () => Promise.reject(new Error("boom")) } };
    await expect(withRetries("thing", p, () => Promise.reject(status(503)))).rejects.toThrow("boom");
  });

  test("does not retry a final error", async () => {
    let calls = 0;
    await expect(
      withRetries("thing", policy(), async () => {
        calls++;
        throw status(404);
      }),
    ).rejects.toMatchObject({ code: "fetch-http-status", status: 404, retryable: false });
    expect(calls).toBe(1);
  });
});

describe("parsers", () => {
  test("Retry-After as seconds or HTTP date", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:30 GMT", now)).toBe(30_000);
    expect(parseRetryAfter("Wed, 31 Dec 2025 00:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeNull();
    // Date.parse takes these, but they are no HTTP date: the usual backoff, not an instant retry.
    expect(parseRetryAfter("1.5", now)).toBeNull();
    expect(parseRetryAfter("soon 1", now)).toBeNull();
    expect(parseRetryAfter("2026-01-01T00:00:30Z", now)).toBeNull();
    expect(parseRetryAfter(undefined, now)).toBeNull();
  });

  test("Content-Range", () => {
    expect(parseContentRange("bytes 100-199/200")).toEqual({ start: 100, end: 199, total: 200 });
    expect(parseContentRange("bytes 0-9/*")).toEqual({ start: 0, end: 9, total: null });
    expect(parseContentRange("bytes */200")).toBeNull();
    expect(parseContentRange(undefined)).toBeNull();
  });
});

describe("source URLs", () => {
  const dir = sourceDirectory({ url: "https://example.org/extensions/", name: "kata-containers" });

  test("every file comes from <url><name>/, as systemd-sysupdate's url-file source fetches it", () => {
    expect(dir).toBe("https://example.org/extensions/kata-containers/");
    expect(sourceDirectory({ url: "https://example.org/extensions", name: "kata-containers" })).toBe(dir);
    expect(manifestUrl(dir)).toBe("https://example.org/extensions/kata-containers/SHA256SUMS");
    expect(fileUrl(dir, "kata-containers-3.2.0-x86-64.raw")).toBe(
      "https://example.org/extensions/kata-containers/kata-containers-3.2.0-x86-64.raw",
    );
    expect(fileUrl(dir, "metadata.json")).toBe("https://example.org/extensions/kata-containers/metadata.json");
  });

  test("a transfer file's Path= is the directory itself", () => {
    const path = "https://mirror.example/bakery/kata/";
    expect(sourceDirectory({ url: "https://example.org/extensions/", name: "kata-containers", path })).toBe(path);
    expect(sourceDirectory({ url: "https://example.org/", name: "kata-containers", path: path.slice(0, -1) })).toBe(
      path,
    );
  });

  test.each(["../etc/passwd", "a/b.raw", "/abs.raw", ".hidden.raw", "x..raw", "a b.raw", "https://evil/x.raw", ""])(
    "refuses the file name %j",
    (file) => {
      expect(() => fileUrl(dir, file)).toThrow(expect.objectContaining({ code: "name-invalid" }));
    },
  );
});
