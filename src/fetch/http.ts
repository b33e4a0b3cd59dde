// The one HTTP client: GET over node:http/https with connect and idle timeouts, bounded redirects, a size cap
// and typed failures, so callers decide about retries from `kind`/`retryable` instead of parsing messages.
import http, { type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import https from "node:https";
import { type Readable, Transform, type TransformCallback } from "node:stream";
import { type ErrorCode, KataError } from "../errors.ts";

export type FetchFailure =
  | "connect" // refused, unreachable, DNS
  | "reset" // connection dropped or body cut short
  | "timeout" // connect or idle timeout
  | "status" // an HTTP status we do not accept
  | "too-large" // Content-Length or counted bytes over the cap
  | "redirect" // too many redirects, a loop, or a bad Location
  | "aborted"; // the caller's AbortSignal fired

const CODES: Record<FetchFailure, ErrorCode> = {
  connect: "fetch-failed",
  reset: "fetch-failed",
  timeout: "fetch-timeout",
  status: "fetch-http-status",
  "too-large": "fetch-too-large",
  redirect: "fetch-failed",
  aborted: "fetch-failed",
};

export class FetchError extends KataError {
  readonly kind: FetchFailure;
  readonly url: string;
  /** The HTTP status for kind "status", else null. */
  readonly status: number | null;
  /** Parsed Retry-After (429/503), in milliseconds from now. */
  readonly retryAfterMs: number | null;
  /** Worth trying again later: network trouble, timeouts, 5xx, 408, 429. */
  readonly retryable: boolean;

  constructor(
    kind: FetchFailure,
    url: string,
    message: string,
    extra: { status?: number; retryAfterMs?: number | null; cause?: unknown; remedy?: string } = {},
  ) {
    const status = extra.status ?? null;
    super(CODES[kind], `${url}: ${message}`, {
      remedy: extra.remedy ?? remedyFor(kind, status),
      cause: extra.cause,
    });
    this.name = "FetchError";
    this.kind = kind;
    this.url = url;
    this.status = status;
    this.retryAfterMs = extra.retryAfterMs ?? null;
    this.retryable =
      kind === "connect" ||
      kind === "reset" ||
      kind === "timeout" ||
      (kind === "status" && status !== null && (status >= 500 || status === 408 || status === 429));
  }
}

function remedyFor(kind: FetchFailure, status: number | null): string {
  switch (kind) {
    case "status":
      return status === 404
        ? "check [source] url and name in the configuration; the file is not published there"
        : "the release server is failing; it is retried on the next pass";
    case "too-large":
      return "raise [fetch] maxBytes if the image is really this large";
    case "redirect":
      return "fix the redirect configuration of the release server or point [source] url at the final location";
    case "aborted":
      return "the operation was cancelled";
    default:
      return "check network connectivity to the release server; it is retried on the next pass";
  }
}

export interface GetOptions {
  connectTimeoutMs: number;
  /** No byte for this long (waiting for headers or inside the body) fails the request. */
  idleTimeoutMs: number;
  /** Cap on the body size; checked against Content-Length up front and against counted bytes. */
  maxBytes: number;
  maxRedirects?: number;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Statuses returned to the caller instead of thrown; default 200 only (206 is added when a Range is sent). */
  accept?: readonly number[];
}

export interface Response {
  /** The URL that answered, after redirects. */
  url: string;
  status: number;
  headers: IncomingHttpHeaders;
  /** Content-Length when the server sent one. */
  contentLength: number | null;
  /** The body; errors with a FetchError when cut short, idle too long or over the cap. */
  body: Readable;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** GET `url`, following redirects; resolves once headers of an accepted status arrive. */
export async function httpGet(url: string, options: GetOptions): Promise<Response> {
  const maxRedirects = options.maxRedirects ?? 5;
  const seen = new Set<string>();
  let current = url;
  for (let hop = 0; ; hop++) {
    seen.add(current);
    const res = await request(current, options);
    const location = res.headers.location;
    if (!REDIRECTS.has(res.statusCode ?? 0) || location === undefined) {
      return checkResponse(current, res, options);
    }
    res.resume();
    let next: string;
    try {
      next = new URL(location, current).toString();
    } catch (cause) {
      throw new FetchError("redirect", current, `redirect to an invalid Location "${location}"`, { cause });
    }
    if (!/^https?:$/.test(new URL(next).protocol)) {
      throw new FetchError("redirect", current, `redirect to unsupported scheme: ${next}`);
    }
    if (seen.has(next)) throw new FetchError("redirect", url, `redirect loop through ${next}`);
    if (hop + 1 > maxRedirects) throw new FetchError("redirect", url, `more than ${maxRedirects} redirects`);
    current = next;
  }
}

/** GET a small file whole (manifests, signatures). */
export async function httpGetBuffer(url: string, options: GetOptions): Promise<Buffer> {
  const res = await httpGet(url, options);
  const chunks: Buffer[] = [];
  for await (const chunk of res.body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function request(url: string, options: GetOptions): Promise<IncomingMessage> {
  const target = new URL(url);
  const client = target.protocol === "https:" ? https : target.protocol === "http:" ? http : null;
  if (client === null) {
    return Promise.reject(new FetchError("connect", url, `unsupported URL scheme ${target.protocol}`));
  }
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(new FetchError("aborted", url, "aborted", { cause: options.signal.reason }));
      return;
    }
    let failure: FetchError | null = null;
    const req = client.get(target, { headers: options.headers, agent: false, signal: options.signal });
    // Remember why we destroyed the request so the error handler reports our reason, not "socket hang up".
    const fail = (err: FetchError): void => {
      failure ??= err;
      req.destroy(err);
    };
    req.on("socket", (socket) => {
      const onIdle = (): void => fail(new FetchError("timeout", url, `no data for ${options.idleTimeoutMs} ms`));
      if (!socket.connecting) {
        socket.setTimeout(options.idleTimeoutMs, onIdle);
        return;
      }
      const connectTimer = setTimeout(
        () => fail(new FetchError("timeout", url, `connect timed out after ${options.connectTimeoutMs} ms`)),
        options.connectTimeoutMs,
      );
      socket.once("connect", () => {
        clearTimeout(connectTimer);
        socket.setTimeout(options.idleTimeoutMs, onIdle);
      });
      socket.once("close", () => clearTimeout(connectTimer));
    });
    req.on("error", (err) => reject(failure ?? classify(url, err, options.signal)));
    req.on("response", (res) => {
      // Errors after this point surface on the body stream.
      req.removeAllListeners("error");
      req.on("error", (err) => res.destroy(failure ?? classify(url, err, options.signal)));
      resolve(res);
    });
  });
}

function classify(url: string, err: Error, signal: AbortSignal | undefined): FetchError {
  if (err instanceof FetchError) return err;
  if (signal?.aborted || err.name === "AbortError") {
    return new FetchError("aborted", url, "aborted", { cause: signal?.reason ?? err });
  }
  const code = (err as NodeJS.ErrnoException).code;
  const connect = ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL"];
  if (code !== undefined && connect.includes(code)) {
    return new FetchError("connect", url, `cannot connect: ${err.message}`, { cause: err });
  }
  return new FetchError("reset", url, `connection lost: ${err.message}`, { cause: err });
}

async function checkResponse(url: string, res: IncomingMessage, options: GetOptions): Promise<Response> {
  const status = res.statusCode ?? 0;
  const accept = options.accept ?? (options.headers?.Range === undefined ? [200] : [200, 206]);
  if (!accept.includes(status)) {
    res.resume();
    throw new FetchError("status", url, `HTTP ${status} ${res.statusMessage ?? ""}`.trim(), {
      status,
      retryAfterMs: parseRetryAfter(res.headers["retry-after"], Date.now()),
    });
  }
  const declared = res.headers["content-length"];
  const contentLength = declared !== undefined && /^\d+$/.test(declared) ? Number(declared) : null;
  if (contentLength !== null && contentLength > options.maxBytes) {
    res.destroy();
    throw new FetchError("too-large", url, `Content-Length ${contentLength} exceeds the cap of ${options.maxBytes}`);
  }
  const counter = new ByteCap(url, options.maxBytes, contentLength);
  // A body cut short before Content-Length or before the last chunk surfaces here as an "aborted" error.
  res.on("error", (err) => counter.endWith(classify(url, err, options.signal)));
  res.pipe(counter);
  // Readers get errors by iterating or piping the body; this only keeps one nobody reads yet from being fatal.
  counter.on("error", () => undefined);
  // Whoever stops reading the body early (error or destroy) also closes the connection.
  counter.on("close", () => {
    if (!res.complete) res.destroy();
  });
  return { url, status, headers: res.headers, contentLength, body: counter };
}

/** Counts body bytes: fails past the cap, and when the body ends short of Content-Length. */
class ByteCap extends Transform {
  #bytes = 0;
  readonly #url: string;
  readonly #max: number;
  readonly #declared: number | null;
  #failure: FetchError | null = null;

  constructor(url: string, max: number, declared: number | null) {
    super();
    this.#url = url;
    this.#max = max;
    this.#declared = declared;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#bytes += chunk.length;
    if (this.#bytes > this.#max) {
      callback(new FetchError("too-large", this.#url, `body exceeds the cap of ${this.#max} bytes`));
      return;
    }
    callback(null, chunk);
  }

  /** Fails the body after the bytes already received are passed on, so a resume can start after them. */
  endWith(err: FetchError): void {
    this.#failure ??= err;
    if (!this.writableEnded) this.end();
  }

  override _flush(callback: TransformCallback): void {
    if (this.#failure !== null) {
      callback(this.#failure);
      return;
    }
    if (this.#declared !== null && this.#bytes < this.#declared) {
      callback(new FetchError("reset", this.#url, `body ended after ${this.#bytes} of ${this.#declared} bytes`));
      return;
    }
    callback();
  }
}

/** Retry-After is either delta-seconds or an HTTP date; returns milliseconds from `nowMs`, or null. */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | null {
  if (value === undefined) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return null;
  return Math.max(0, at - nowMs);
}

/** `bytes START-END/TOTAL` of a 206 answer; null when absent or malformed. */
export function parseContentRange(
  value: string | undefined,
): { start: number; end: number; total: number | null } | null {
  const m = value === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim());
  if (m === null) return null;
  const [, start, end, total] = m;
  return { start: Number(start), end: Number(end), total: total === "*" ? null : Number(total) };
}
