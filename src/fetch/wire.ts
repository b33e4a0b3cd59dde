// One HTTP/1.1 GET on a connection of its own, read straight from the socket into a few reused buffers.
//
// Why not node:http: it allocates a fresh buffer for every socket read and runs each one through its parser and
// a stream before we see it. On a 512 MiB image that costs half the throughput of `curl -o` (issue 4's
// benchmark; measured: node:http 585-739 ms to drain 512 MiB over loopback, a socket with `onread` 270-350 ms).
// So this speaks only what fetching a published file needs: GET, `Connection: close`, no request body, no
// compression, and the response framing of RFC 9112 section 6.3 (Content-Length, chunked, or until close).
//
// Buffers: the socket reads into pooled buffers (`onread`). A body chunk handed to the sink is a view of one;
// the buffer is reused once the sink is done with it (its returned promise settled). While every buffer is in
// use, the socket stops reading, so a slow disk slows the server down instead of filling memory.
import type { Socket } from "node:net";
import type { ConnectionOptions } from "node:tls";

/** Called in order with each piece of the body; the chunk stays valid until the returned promise settles. */
export type Sink = (chunk: Buffer) => void | Promise<void>;

export interface Body {
  /**
   * Reads the body to its end through `sink`. Resolves once it is complete and every sink promise settled;
   * rejects with the first failure (connection, framing, timeout, or what `sink` threw), also only after the
   * chunks delivered before it were settled, so a caller writing them knows they are all written.
   */
  read(sink: Sink): Promise<void>;
  /** Closes the connection without reading (any more of) the body. */
  discard(): void;
}

export interface WireResponse {
  status: number;
  statusText: string;
  /** Lower-case names; repeated fields joined with ", ". */
  headers: Record<string, string>;
  body: Body;
}

export interface WireOptions {
  headers?: Record<string, string>;
  connectTimeoutMs: number;
  /** No byte for this long, before the head or inside the body, fails the exchange. */
  idleTimeoutMs: number;
  signal?: AbortSignal;
  /** Trusted CA certificates for https instead of the system's (tests with their own CA). */
  ca?: string | Buffer;
}

/**
 * Why an exchange failed, for the caller to turn into its own error type. "protocol" (a malformed response), "tls"
 * (certificate or handshake rejected) and "invalid" (a request that cannot be sent: URL scheme, header) stay the
 * same however often they are tried; the others may not.
 */
export class WireError extends Error {
  readonly kind: "connect" | "reset" | "timeout" | "aborted" | "protocol" | "tls" | "invalid";
  constructor(kind: WireError["kind"], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "WireError";
    this.kind = kind;
  }
}

const BUFFER_BYTES = 1 << 20;
/** Buffers the sink may hold at once before the socket pauses; one more is the socket's next read buffer. */
const POOL_BUFFERS = 8;
/**
 * The most body bytes a reader can hold at once: every pool buffer and the socket's next read. A sink writing
 * chunks concurrently has no more than this unwritten when it stops (download.ts cuts a crashed .partial by it).
 */
export const MAX_BYTES_IN_FLIGHT = (POOL_BUFFERS + 1) * BUFFER_BYTES;
const MAX_HEAD_BYTES = 64 << 10;
const USER_AGENT = "kata-sysextd";

/** Sends GET `url` and resolves with the response head; the body is read with `body.read`. */
export function get(url: URL, options: WireOptions): Promise<WireResponse> {
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return Promise.reject(new WireError("invalid", `unsupported URL scheme ${url.protocol}`));
  }
  if (options.signal?.aborted) return Promise.reject(new WireError("aborted", "aborted"));
  try {
    return new Exchange(url, options).head;
  } catch (err) {
    return Promise.reject(err);
  }
}

class Exchange {
  readonly head: Promise<WireResponse>;
  readonly #socket: Socket;
  readonly #options: WireOptions;
  readonly #tls: boolean;
  readonly #free: Buffer[] = [];
  readonly #holds = new Map<Buffer, number>();
  #headBytes: Buffer = Buffer.alloc(0);
  /** Bytes of interim (1xx) responses read past: they count toward the head's cap, or a server could send them forever. */
  #interimBytes = 0;
  #framing: Framing | null = null;
  /** Body bytes that arrived before `read` was called, with the buffers they are views of: replayed first. */
  #early: [chunk: Buffer, owner: Buffer][] = [];
  #sink: Sink | null = null;
  #paused = false;
  #pending = 0; // sink promises not yet settled
  #ended = false; // the body is complete
  #failure: Error | null = null;
  #settle: { resolve(): void; reject(err: Error): void } | null = null;
  #resolveHead!: (res: WireResponse) => void;
  #rejectHead!: (err: Error) => void;
  #headDone = false;
  #connected = false;
  #sinkFailed = false;
  readonly #onAbort = (): void => this.#fail(new WireError("aborted", "aborted"));

  constructor(url: URL, options: WireOptions) {
    this.#options = options;
    this.#tls = url.protocol === "https:";
    this.head = new Promise((resolve, reject) => {
      this.#resolveHead = resolve;
      this.#rejectHead = reject;
    });
    const request = requestHead(url, options.headers ?? {}); // throws on a bad header before connecting
    const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
    const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
    const onread = {
      buffer: (): Buffer => this.#free.pop() ?? Buffer.allocUnsafe(BUFFER_BYTES),
      callback: (bytes: number, buffer: Uint8Array): boolean => this.#onRead(buffer as Buffer, bytes),
    };
    // node:net loads with the first connection, not with every command that could fetch (the boot step does not).
    const { isIP, Socket } = process.getBuiltinModule("node:net");
    this.#socket =
      url.protocol === "https:"
        ? // node:tls loads only for an https source: it costs a plain-http or offline command (the boot step) 10 ms.
          process.getBuiltinModule("node:tls").connect({
            host,
            port,
            servername: isIP(host) === 0 ? host : undefined,
            ALPNProtocols: ["http/1.1"],
            ca: options.ca,
            // TLSSocket takes net.Socket's onread (it reads the same way); @types/node leaves it out.
            onread,
          } as ConnectionOptions)
        : new Socket({ onread }).connect({ host, port });
    const socket = this.#socket;
    const connectTimer = setTimeout(
      () => this.#fail(new WireError("timeout", `connect timed out after ${options.connectTimeoutMs} ms`)),
      options.connectTimeoutMs,
    );
    socket.once(url.protocol === "https:" ? "secureConnect" : "connect", () => {
      clearTimeout(connectTimer);
      this.#connected = true;
      this.#watchIdle(true);
      socket.write(request);
    });
    socket.on("timeout", () => this.#fail(new WireError("timeout", `no data for ${options.idleTimeoutMs} ms`)));
    socket.on("error", (err) => this.#fail(classifySocketError(err, this.#connected)));
    socket.on("end", () => this.#onEnd());
    socket.on("close", () => {
      clearTimeout(connectTimer);
      this.#onEnd();
    });
    options.signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  #onRead(buffer: Buffer, bytes: number): boolean {
    if (this.#failure === null && !this.#ended) {
      const start = this.#headDone ? 0 : this.#takeHead(buffer, bytes); // -1: the head goes on
      if (start >= 0 && start < bytes) this.#feed(buffer, start, bytes);
    }
    // Not held by anyone: the socket's next read may go into it again.
    if (!this.#holds.has(buffer)) this.#free.push(buffer);
    if (this.#failure !== null || this.#ended) return false;
    if (this.#holds.size < POOL_BUFFERS) return true;
    this.#paused = true;
    // Waiting for our own sink (the disk) is not the server being idle. A body nobody reads yet still times out.
    if (this.#sink !== null) this.#watchIdle(false);
    return false;
  }

  #watchIdle(on: boolean): void {
    this.#socket.setTimeout(on ? this.#options.idleTimeoutMs : 0);
  }

  /** Collects the response head; returns where the body starts in `buffer`, or -1 while the head goes on. */
  #takeHead(buffer: Buffer, bytes: number): number {
    this.#headBytes = Buffer.concat([this.#headBytes, buffer.subarray(0, bytes)]);
    for (;;) {
      const [end, bodyStart] = headEnd(this.#headBytes);
      if (this.#interimBytes + (end < 0 ? this.#headBytes.length : end) > MAX_HEAD_BYTES) {
        this.#fail(new WireError("protocol", `response head is longer than ${MAX_HEAD_BYTES} bytes`));
        return -1;
      }
      if (end < 0) return -1;
      let head: ParsedHead;
      try {
        head = parseHead(this.#headBytes.subarray(0, end).toString("latin1").replace(/\r$/, ""));
      } catch (err) {
        this.#fail(err as Error);
        return -1;
      }
      if (head.status >= 100 && head.status < 200) {
        // An interim response (100 Continue, 103 Early Hints): the real one follows.
        this.#interimBytes += bodyStart;
        this.#headBytes = this.#headBytes.subarray(bodyStart);
        continue;
      }
      try {
        this.#framing = framingFor(head, this.#tls);
      } catch (err) {
        this.#fail(err as Error);
        return -1;
      }
      this.#headDone = true;
      // The head ended in this read: what follows it here is the start of the body.
      const bodyInBuffer = bytes - (this.#headBytes.length - bodyStart);
      this.#headBytes = Buffer.alloc(0);
      if (this.#framing.complete) this.#finishBody();
      this.#resolveHead({ ...head, body: this.#body() });
      // Until the caller reads the body, what arrives is held (the pool bounds it: the socket pauses when full).
      return bodyInBuffer;
    }
  }

  #body(): Body {
    return {
      read: (sink) => {
        if (this.#sink !== null) return Promise.reject(new Error("the body can be read only once"));
        this.#sink = sink;
        const done = new Promise<void>((resolve, reject) => {
          this.#settle = { resolve, reject };
        });
        // Paused before anyone read (the pool filled up): from now on that is waiting for our sink, not the server.
        if (this.#paused) this.#watchIdle(false);
        const early = this.#early;
        this.#early = [];
        for (const [chunk, owner] of early) {
          this.#deliver(chunk, owner);
          this.#release(owner);
        }
        this.#maybeResume();
        this.#maybeFinish();
        return done;
      },
      discard: () => this.#close(),
    };
  }

  #feed(buffer: Buffer, start: number, end: number): void {
    const framing = this.#framing;
    if (framing === null) return;
    try {
      framing.feed(buffer, start, end, (from, to) => {
        const chunk = buffer.subarray(from, to);
        if (this.#sink === null) {
          this.#hold(buffer);
          this.#early.push([chunk, buffer]);
        } else {
          this.#deliver(chunk, buffer);
        }
      });
    } catch (err) {
      this.#fail(err as Error);
      return;
    }
    if (framing.complete) this.#finishBody();
  }

  /** The body is all here: no more reading; the read settles once the sink is done. */
  #finishBody(): void {
    this.#ended = true;
    this.#close();
    this.#maybeFinish();
  }

  /** Bytes that arrived before a failure of the connection still go to the sink; none after the sink failed. */
  #deliver(chunk: Buffer, buffer: Buffer): void {
    if (this.#sinkFailed) return;
    let result: void | Promise<void>;
    try {
      result = this.#sink?.(chunk);
    } catch (err) {
      this.#sinkFailed = true;
      this.#fail(err as Error);
      return;
    }
    if (!(result instanceof Promise)) return;
    this.#hold(buffer);
    this.#pending += 1;
    result.then(
      () => this.#afterSink(buffer, null),
      (err: unknown) => this.#afterSink(buffer, err instanceof Error ? err : new Error(String(err))),
    );
  }

  #afterSink(buffer: Buffer, err: Error | null): void {
    this.#pending -= 1;
    this.#release(buffer);
    if (err !== null) {
      this.#sinkFailed = true;
      this.#fail(err);
    }
    this.#maybeResume();
    this.#maybeFinish();
  }

  #hold(buffer: Buffer): void {
    this.#holds.set(buffer, (this.#holds.get(buffer) ?? 0) + 1);
  }

  #release(buffer: Buffer): void {
    const left = (this.#holds.get(buffer) ?? 1) - 1;
    if (left > 0) {
      this.#holds.set(buffer, left);
      return;
    }
    this.#holds.delete(buffer);
    this.#free.push(buffer);
  }

  #maybeResume(): void {
    if (!this.#paused || this.#sink === null || this.#failure !== null || this.#ended) return;
    if (this.#holds.size >= POOL_BUFFERS) return;
    this.#paused = false;
    this.#watchIdle(true);
    this.#socket.resume();
  }

  #onEnd(): void {
    if (this.#failure !== null || this.#ended) return;
    if (!this.#headDone) {
      this.#fail(new WireError("reset", "connection closed before the response head arrived"));
      return;
    }
    const framing = this.#framing;
    const cut = framing?.atEof() ?? null;
    if (cut !== null) {
      this.#fail(new WireError("reset", cut));
      return;
    }
    this.#finishBody();
  }

  /** The first failure wins. After the body ended only the sink can still fail (its last writes). */
  #fail(err: Error): void {
    if (this.#failure !== null || (this.#ended && err instanceof WireError)) return;
    this.#failure = err;
    this.#close();
    if (!this.#headDone) this.#rejectHead(err);
    this.#maybeFinish();
  }

  #close(): void {
    this.#options.signal?.removeEventListener("abort", this.#onAbort);
    if (!this.#socket.destroyed) this.#socket.destroy();
  }

  #maybeFinish(): void {
    if (this.#settle === null || this.#pending > 0) return;
    if (this.#failure !== null) {
      this.#settle.reject(this.#failure);
      this.#settle = null;
    } else if (this.#ended) {
      this.#settle.resolve();
      this.#settle = null;
    }
  }
}

function requestHead(url: URL, headers: Record<string, string>): string {
  const lines = [
    `GET ${url.pathname || "/"}${url.search} HTTP/1.1`,
    `Host: ${url.host}`,
    `User-Agent: ${USER_AGENT}`,
    "Accept-Encoding: identity",
    "Connection: close",
  ];
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new WireError("invalid", `bad request header ${name}`);
    lines.push(`${name}: ${value}`);
  }
  return `${lines.join("\r\n")}\r\n\r\n`;
}

interface ParsedHead {
  status: number;
  statusText: string;
  headers: Record<string, string>;
}

/** Status line and fields of a response head (without its final empty line). */
export function parseHead(text: string): ParsedHead {
  const lines = text.split(/\r?\n/);
  const statusLine = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? "");
  if (statusLine === null) {
    throw new WireError("protocol", `not an HTTP/1.x response: "${(lines[0] ?? "").slice(0, 80)}"`);
  }
  // No prototype: a field named like an Object.prototype member (constructor, __proto__) is a field like any other.
  const headers: Record<string, string> = Object.create(null);
  for (const line of lines.slice(1)) {
    const field = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/.exec(line);
    if (field === null) throw new WireError("protocol", `malformed response header line "${line.slice(0, 80)}"`);
    const name = (field[1] ?? "").toLowerCase();
    const value = field[2] ?? "";
    headers[name] = Object.hasOwn(headers, name) ? `${headers[name]}, ${value}` : value;
  }
  return { status: Number(statusLine[1]), statusText: statusLine[2] ?? "", headers };
}

/** How the body of a response to GET is delimited (RFC 9112 section 6.3). */
interface Framing {
  /** Passes the ranges of buffer[start, end) that are body bytes to `emit`. Throws on bad framing. */
  feed(buffer: Buffer, start: number, end: number, emit: Emit): void;
  /** The body is complete; bytes after it are ignored. */
  readonly complete: boolean;
  /** At the end of the connection: null when the body is complete, else why it is cut short. */
  atEof(): string | null;
}

type Emit = (from: number, to: number) => void;

function framingFor(head: ParsedHead, tls: boolean): Framing {
  if (head.status === 204 || head.status === 304) return new Fixed(0);
  const coding = head.headers["transfer-encoding"];
  if (coding !== undefined) {
    const last = coding.split(",").at(-1)?.trim().toLowerCase();
    return last === "chunked" ? new Chunked() : untilClose(tls);
  }
  const length = head.headers["content-length"];
  if (length !== undefined) {
    const values = new Set(length.split(",").map((v) => v.trim()));
    const [only] = values;
    if (values.size !== 1 || only === undefined || !/^\d{1,15}$/.test(only)) {
      throw new WireError("protocol", `invalid Content-Length "${length}"`);
    }
    return new Fixed(Number(only));
  }
  return untilClose(tls);
}

/**
 * A body that ends when the connection does. Over TLS a cut connection looks the same as a finished one here
 * (node reports no missing close_notify), so anyone on the path could truncate a manifest unnoticed: refused.
 */
function untilClose(tls: boolean): Framing {
  if (tls) {
    throw new WireError(
      "protocol",
      "https response without Content-Length or chunked framing; its end cannot be trusted",
    );
  }
  return new UntilClose();
}

/**
 * Where the head ends: [index of its last line break, index of the body's first byte], or [-1, -1] while the
 * empty line that ends it has not arrived. Lines end in CRLF, or a bare LF (RFC 9112 section 2.2 allows it).
 */
function headEnd(bytes: Buffer): [number, number] {
  for (let at = bytes.indexOf(0x0a); at >= 0; at = bytes.indexOf(0x0a, at + 1)) {
    if (bytes[at + 1] === 0x0a) return [at, at + 2];
    if (bytes[at + 1] === 0x0d && bytes[at + 2] === 0x0a) return [at, at + 3];
  }
  return [-1, -1];
}

class Fixed implements Framing {
  #left: number;
  readonly #declared: number;
  constructor(length: number) {
    this.#left = length;
    this.#declared = length;
  }
  get complete(): boolean {
    return this.#left === 0;
  }
  feed(_buffer: Buffer, start: number, end: number, emit: Emit): void {
    const take = Math.min(this.#left, end - start);
    if (take === 0) return;
    this.#left -= take;
    emit(start, start + take);
  }
  atEof(): string | null {
    return this.#left === 0 ? null : `body ended after ${this.#declared - this.#left} of ${this.#declared} bytes`;
  }
}

class UntilClose implements Framing {
  readonly complete = false;
  feed(_buffer: Buffer, start: number, end: number, emit: Emit): void {
    emit(start, end);
  }
  atEof(): string | null {
    return null;
  }
}

/** Transfer-Encoding: chunked. Chunk extensions and trailer fields are read past and ignored. */
export class Chunked implements Framing {
  #state: "size" | "data" | "data-end" | "trailer" | "done" = "size";
  #line = ""; // the size or trailer line read so far
  #left = 0; // data bytes left in the current chunk
  #lineEnd = ""; // CRLF after chunk data, as far as seen
  #trailerBytes = 0;

  get complete(): boolean {
    return this.#state === "done";
  }

  feed(buffer: Buffer, start: number, end: number, emit: Emit): void {
    let at = start;
    while (at < end && this.#state !== "done") {
      if (this.#state === "data") {
        const take = Math.min(this.#left, end - at);
        emit(at, at + take);
        at += take;
        this.#left -= take;
        if (this.#left === 0) this.#state = "data-end";
        continue;
      }
      const byte = buffer[at] ?? 0;
      at += 1;
      if (this.#state === "data-end") {
        this.#lineEnd += String.fromCharCode(byte);
        if (!"\r\n".startsWith(this.#lineEnd)) throw new WireError("protocol", "chunk data not followed by CRLF");
        if (this.#lineEnd === "\r\n") {
          this.#lineEnd = "";
          this.#state = "size";
        }
        continue;
      }
      if (byte !== 0x0a) {
        this.#line += String.fromCharCode(byte);
        if (this.#state === "trailer") {
          if (++this.#trailerBytes > MAX_HEAD_BYTES) {
            throw new WireError("protocol", `chunked trailer longer than ${MAX_HEAD_BYTES} bytes`);
          }
        } else if (this.#line.length > 1024) {
          throw new WireError("protocol", "chunk size line longer than 1024 bytes");
        }
        continue;
      }
      const line = this.#line.endsWith("\r") ? this.#line.slice(0, -1) : this.#line;
      this.#line = "";
      if (this.#state === "trailer") {
        if (line === "") this.#state = "done";
        continue;
      }
      // Leading zeros are allowed in any number; 13 hex digits more is beyond any file we would take.
      const size = /^0*([0-9a-fA-F]{1,13})[ \t]*(?:;.*)?$/.exec(line);
      if (size === null) throw new WireError("protocol", `bad chunk size line "${line.slice(0, 40)}"`);
      this.#left = Number.parseInt(size[1] ?? "", 16);
      this.#state = this.#left === 0 ? "trailer" : "data";
    }
  }

  atEof(): string | null {
    return this.#state === "done" ? null : "connection closed before the last chunk";
  }
}

/**
 * Before the connection (and TLS handshake) is up, a failure is "connect", or "tls" when TLS rejected the
 * server; after it, the connection was lost.
 */
function classifySocketError(err: Error, connected: boolean): WireError {
  if (connected) return new WireError("reset", `connection lost: ${err.message}`, { cause: err });
  const code = (err as NodeJS.ErrnoException).code ?? "";
  const network = ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL"];
  if (network.includes(code)) return new WireError("connect", `cannot connect: ${err.message}`, { cause: err });
  if (code === "ECONNRESET" || code === "EPIPE") {
    return new WireError("reset", `connection lost while connecting: ${err.message}`, { cause: err });
  }
  if (/^ERR_(SSL|TLS)_/.test(code) || CERTIFICATE_ERRORS.has(code)) {
    return new WireError("tls", `TLS handshake failed: ${err.message}`, { cause: err });
  }
  return new WireError("connect", `cannot connect (TLS or socket): ${err.message}`, { cause: err });
}

/** The codes node gives OpenSSL's certificate verification failures (X509_V_ERR_* without the prefix). */
const CERTIFICATE_ERRORS = new Set([
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_CRL",
  "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
  "UNABLE_TO_DECRYPT_CRL_SIGNATURE",
  "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
  "CERT_SIGNATURE_FAILURE",
  "CRL_SIGNATURE_FAILURE",
  "CERT_NOT_YET_VALID",
  "CERT_HAS_EXPIRED",
  "CRL_NOT_YET_VALID",
  "CRL_HAS_EXPIRED",
  "ERROR_IN_CERT_NOT_BEFORE_FIELD",
  "ERROR_IN_CERT_NOT_AFTER_FIELD",
  "ERROR_IN_CRL_LAST_UPDATE_FIELD",
  "ERROR_IN_CRL_NEXT_UPDATE_FIELD",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "CERT_CHAIN_TOO_LONG",
  "CERT_REVOKED",
  "INVALID_CA",
  "PATH_LENGTH_EXCEEDED",
  "INVALID_PURPOSE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "HOSTNAME_MISMATCH",
]);
