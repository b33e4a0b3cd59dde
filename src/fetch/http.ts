// The one HTTP client: GET with connect and idle timeouts, bounded redirects, a size cap and typed failures, so
// callers decide about retries from `kind`/`retryable` instead of parsing messages. The exchange itself is
// wire.ts (HTTP/1.1 over net/tls, read into reused buffers).
import { type ErrorCode, KataError } from "../errors.ts";
import { redactCredentials } from "../redact.ts";
import { type Body, get, type Sink, WireError, type WireResponse } from "./wire.ts";

export type FetchFailure =
  | "connect" // refused, unreachable, DNS
  | "reset" // connection dropped or body cut short
  | "protocol" // a malformed response: status line, header field, Content-Length or chunk framing
  | "tls" // the TLS handshake failed or the server's certificate was rejected
  | "timeout" // connect or idle timeout
  | "status" // an HTTP status we do not accept
  | "too-large" // Content-Length or counted bytes over the cap
  | "redirect" // too many redirects, a loop, or a bad Location
  | "aborted" // the caller's AbortSignal fired
  | "invalid"; // the request cannot be made: not a URL, a scheme other than http/https, a bad header

const CODES: Record<FetchFailure, ErrorCode> = {
  connect: "fetch-failed",
  reset: "fetch-failed",
  protocol: "fetch-failed",
  tls: "fetch-failed",
  timeout: "fetch-timeout",
  status: "fetch-http-status",
  "too-large": "fetch-too-large",
  redirect: "fetch-failed",
  aborted: "fetch-failed",
  invalid: "fetch-failed",
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
    this.url = redactCredentials(url);
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
        ? "check [source] url and name (or Path= in the [source] sysupdate transfer file); the file is not published there"
        : "the release server is failing; it is retried on the next pass";
    case "too-large":
      return "raise [fetch] max_bytes if the image is really this large";
    case "protocol":
      return "the server does not speak valid HTTP/1.1 (wrong host or port, or a broken proxy); check [source] url";
    case "tls":
      return "the server's certificate is not trusted: check the host in [source] url, the CA certificates, the clock";
    case "redirect":
      return "fix the redirect configuration of the release server or point [source] url at the final location";
    case "aborted":
      return "the operation was cancelled";
    case "invalid":
      return "check [source] url in the configuration: it must be an http:// or https:// URL";
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
  /** The remedy of a body over the cap, naming the setting that raises it; default: the image cap's. */
  tooLargeRemedy?: string;
  maxRedirects?: number;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Statuses returned to the caller instead of thrown; default 200 only (206 is added when a Range is sent). */
  accept?: readonly number[];
  /** Trusted CA certificates for https instead of the system's (tests with their own CA). */
  ca?: string | Buffer;
}

export interface Response {
  /** The URL that answered, after redirects. */
  url: string;
  status: number;
  /** Lower-case field names. */
  headers: Record<string, string>;
  /** Content-Length when the server sent one. */
  contentLength: number | null;
  /**
   * The body: `read(sink)` rejects with a FetchError when it is cut short, idle too long or over the cap, after
   * every chunk received before that went through the sink. Chunks are views of reused buffers: a sink that
   * keeps one past its call (or past the promise it returned) must copy it.
   */
  body: Body;
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
    if (!REDIRECTS.has(res.status) || location === undefined) {
      return checkResponse(current, res, options);
    }
    res.body.discard();
    let next: string;
    try {
      next = new URL(location, current).toString();
    } catch (cause) {
      throw new FetchError("redirect", current, `redirect to an invalid Location "${location}"`, { cause });
    }
    const scheme = new URL(next).protocol;
    if (scheme !== "http:" && scheme !== "https:") {
      throw new FetchError("redirect", current, `redirect to unsupported scheme: ${next}`);
    }
    // Over http anyone on the path could swap SHA256SUMS and the image, which defeats verify = "checksum".
    if (scheme === "http:" && new URL(current).protocol === "https:") {
      throw new FetchError("redirect", current, `refused a downgrade from https to http: redirect to ${next}`, {
        remedy: "the release server redirects to plain http; fix it or point [source] url at an https mirror",
      });
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
  await res.body.read((chunk) => {
    chunks.push(Buffer.from(chunk)); // a copy: the chunk's buffer is reused
  });
  return Buffer.concat(chunks);
}

async function request(url: string, options: GetOptions): Promise<WireResponse> {
  let target: URL;
  try {
    target = new URL(url);
  } catch (cause) {
    throw new FetchError("invalid", url, "not a valid URL", { cause });
  }
  try {
    const res = await get(target, options);
    return { ...res, body: fetchErrors(url, res.body, options.signal) };
  } catch (err) {
    throw classify(url, err, options.signal);
  }
}

/** The body with failures turned into FetchErrors naming the URL. */
function fetchErrors(url: string, body: Body, signal: AbortSignal | undefined): Body {
  return {
    read: (sink) => body.read(sink).catch((err: unknown) => Promise.reject(classify(url, err, signal))),
    discard: () => body.discard(),
  };
}

function classify(url: string, err: unknown, signal: AbortSignal | undefined): Error {
  if (err instanceof KataError) return err;
  if (err instanceof WireError) {
    const cause = err.kind === "aborted" ? (signal?.reason ?? err) : err;
    return new FetchError(err.kind, url, err.message, { cause });
  }
  // What the sink threw (local trouble such as ENOSPC) is the caller's own error: passed through as it is.
  return err instanceof Error ? err : new Error(String(err));
}

function checkResponse(url: string, res: WireResponse, options: GetOptions): Response {
  const status = res.status;
  const accept = options.accept ?? (options.headers?.Range === undefined ? [200] : [200, 206]);
  if (!accept.includes(status)) {
    res.body.discard();
    throw new FetchError("status", url, `HTTP ${status} ${res.statusText}`.trim(), {
      status,
      retryAfterMs: parseRetryAfter(res.headers["retry-after"], Date.now()),
    });
  }
  // With Transfer-Encoding the chunks frame the body and Content-Length means nothing (RFC 9112 section 6.3).
  const declared = res.headers["transfer-encoding"] === undefined ? res.headers["content-length"] : undefined;
  const contentLength = declared !== undefined && /^\d+$/.test(declared) ? Number(declared) : null;
  if (contentLength !== null && contentLength > options.maxBytes) {
    res.body.discard();
    throw new FetchError("too-large", url, `Content-Length ${contentLength} exceeds the cap of ${options.maxBytes}`, {
      remedy: options.tooLargeRemedy,
    });
  }
  return { url, status, headers: res.headers, contentLength, body: capped(url, res.body, options) };
}

/** Counts body bytes on their way to the sink and fails the read past the cap. */
function capped(url: string, body: Body, options: GetOptions): Body {
  let bytes = 0;
  const max = options.maxBytes;
  return {
    read: (sink: Sink) =>
      body.read((chunk) => {
        bytes += chunk.length;
        if (bytes > max) {
          throw new FetchError("too-large", url, `body exceeds the cap of ${max} bytes`, {
            remedy: options.tooLargeRemedy,
          });
        }
        return sink(chunk);
      }),
    discard: () => body.discard(),
  };
}

/**
 * Retry-After is either delta-seconds or an HTTP date (IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT"); returns
 * milliseconds from `nowMs`, or null for anything else (then the usual backoff applies, not an instant retry).
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | null {
  if (value === undefined) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  if (!/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(trimmed)) return null;
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
