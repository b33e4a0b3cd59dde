// A real HTTP release server on 127.0.0.1 for tests, the demo and the benchmark. It serves a directory in the
// sysupdate url-file layout (docs/interface.md, [source]) and misbehaves on purpose when told to:
//
//   const dir = mkdtempSync(...);
//   const { images } = await publishRelease(dir, { images: [{ version: "3.2.0", content: buf }], sign: "binary" });
//   const server = await startReleaseServer(dir);
//   server.setFault("/kata-containers/kata-containers-3.2.0-x86-64.raw", { kind: "reset", afterBytes: 4096 }, 1); // first GET only
//   ... fetch from server.url ...
//   server.requests  // [{ path, range }] of every request, faulted or not
//   await server.refuse(); await server.accept();  // connection refused in between, same URL
//   writeFileSync(keyring, (await testSigningKey()).publicKeyArmored);  // trusts sign: "binary" | "armored"
//   await server.close();
//
// Faults are matched by URL path: "/<name>/SHA256SUMS", "/<name>/SHA256SUMS.gpg", "/<name>/<file>.raw"
// (releasePath() spells one).
import { createHash } from "node:crypto";
import {
  closeSync,
  createReadStream,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { join, resolve, sep } from "node:path";
import { Readable } from "node:stream";
import * as openpgp from "openpgp";

export type Fault =
  /** Sends Content-Length and `afterBytes` of the body, then (50 ms later) resets the connection (TCP RST). */
  | { kind: "reset"; afterBytes: number }
  /**
   * Sends `afterBytes` of the body and closes cleanly (FIN): "length" declares the full Content-Length,
   * "chunked" uses chunked encoding and never sends the last chunk, "close" is an HTTP/1.0-style body
   * delimited by the close, which a client cannot tell from a complete one.
   */
  | { kind: "truncate"; afterBytes: number; framing: "length" | "chunked" | "close" }
  /** Sends headers and `afterBytes` of the body, then nothing; no headers at all when afterBytes is omitted. */
  | { kind: "stall"; afterBytes?: number }
  | { kind: "status"; status: number; retryAfter?: string }
  /** 302 to `to` (absolute, or relative to the request); two redirects pointing at each other make a loop. */
  | { kind: "redirect"; to: string }
  /** `bytes` zero bytes instead of the file, with or without a Content-Length announcing them. */
  | { kind: "oversize"; bytes: number; contentLength: boolean }
  /** The whole file with one byte flipped. */
  | { kind: "corrupt" }
  /** Ignores Range: always 200 with the whole file. */
  | { kind: "no-range" }
  /** Answers a Range with at most `bytes` of it (a 206 ending short of the file, as range-capping CDNs do). */
  | { kind: "short-ranges"; bytes: number };

export interface LoggedRequest {
  path: string;
  /** The Range header, or null. */
  range: string | null;
}

export interface ReleaseServer {
  /** Base URL ending in "/", to use as [source] url. */
  url: string;
  port: number;
  /**
   * Faults the requests whose path equals `match` (or matches the RegExp), for the next `times` of them
   * (default: all). The latest setFault wins where several match; a used-up one falls through to older ones.
   */
  setFault(match: string | RegExp, fault: Fault, times?: number): void;
  clearFaults(): void;
  /** Stops listening, so connections are refused until `accept()`; the URL stays the same. */
  refuse(): Promise<void>;
  accept(): Promise<void>;
  requests: LoggedRequest[];
  close(): Promise<void>;
}

interface Rule {
  match: string | RegExp;
  fault: Fault;
  remaining: number;
}

/** Serves `dir` on 127.0.0.1, on `options.port` or a free port. */
export async function startReleaseServer(dir: string, options: { port?: number } = {}): Promise<ReleaseServer> {
  const root = resolve(dir);
  const rules: Rule[] = [];
  const requests: LoggedRequest[] = [];
  const sockets = new Set<Socket>();

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    requests.push({ path, range: req.headers.range ?? null });
    const rule = rules.find(
      (r) => r.remaining > 0 && (typeof r.match === "string" ? r.match === path : r.match.test(path)),
    );
    if (rule !== undefined) rule.remaining--;
    serve(root, path, req, res, rule?.fault ?? null);
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.keepAliveTimeout = 1000;
  await listen(server, options.port ?? 0);
  const port = (server.address() as AddressInfo).port;

  const stop = (): Promise<void> =>
    new Promise((done) => {
      server.close(() => done());
      for (const socket of sockets) socket.destroy();
    });

  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    setFault: (match, fault, times = Number.POSITIVE_INFINITY) => {
      rules.unshift({ match, fault, remaining: times });
    },
    clearFaults: () => {
      rules.length = 0;
    },
    refuse: stop,
    accept: () => listen(server, port),
    requests,
    close: async () => {
      if (server.listening) await stop();
    },
  };
}

function listen(server: ReturnType<typeof createServer>, port: number): Promise<void> {
  // accept() after every test of a table, refused or not: listening already is done, not an error left behind
  // with its listener (eleven of those warned of a leak).
  if (server.listening) return Promise.resolve();
  return new Promise((done, fail) => {
    server.once("error", fail);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", fail);
      done();
    });
  });
}

function serve(root: string, path: string, req: IncomingMessage, res: ServerResponse, fault: Fault | null): void {
  if (fault?.kind === "status") {
    res.writeHead(fault.status, fault.retryAfter === undefined ? {} : { "Retry-After": fault.retryAfter });
    res.end(`status ${fault.status}\n`);
    return;
  }
  if (fault?.kind === "redirect") {
    res.writeHead(302, { Location: fault.to });
    res.end();
    return;
  }
  if (fault?.kind === "stall" && fault.afterBytes === undefined) return; // never answer
  if (fault?.kind === "oversize") {
    serveZeros(res, fault.bytes, fault.contentLength);
    return;
  }

  const file = resolve(root, `.${decodeURIComponent(path)}`);
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile() || !(file === root || file.startsWith(root + sep))) throw new Error("not a file");
    size = st.size;
  } catch {
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("not found\n");
    return;
  }

  const socket = res.socket;
  if (
    fault !== null &&
    socket !== null &&
    (fault.kind === "reset" || fault.kind === "truncate" || fault.kind === "stall")
  ) {
    // Written by hand so the framing is exactly what the fault describes.
    const head = readHead(file, fault.afterBytes ?? 0);
    const framing = fault.kind === "truncate" ? fault.framing : "length";
    const headers =
      framing === "length"
        ? `Content-Length: ${size}\r\n`
        : framing === "chunked"
          ? "Transfer-Encoding: chunked\r\n"
          : "Connection: close\r\n";
    socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n${headers}\r\n`);
    if (head.length > 0) socket.write(framing === "chunked" ? `${head.length.toString(16)}\r\n` : "");
    socket.write(head, () => {
      // An RST makes the client's kernel drop unread bytes; give them time to be read first, as on a real link.
      if (fault.kind === "reset") setTimeout(() => socket.resetAndDestroy(), 50);
      else if (fault.kind === "truncate") socket.end();
    });
    return;
  }
  if (fault?.kind === "corrupt") {
    const body = readFileSync(file);
    const at = Math.floor(body.length / 2);
    body[at] = (body[at] ?? 0) ^ 0xff;
    res.writeHead(200, { "Content-Length": body.length });
    res.end(body);
    return;
  }

  const range = fault?.kind === "no-range" ? null : parseRange(req.headers.range, size);
  if (range === "unsatisfiable") {
    res.writeHead(416, { "Content-Range": `bytes */${size}` });
    res.end();
    return;
  }
  const acceptRanges = fault?.kind === "no-range" ? {} : { "Accept-Ranges": "bytes" };
  const [start, whole] = range ?? [0, size - 1];
  const end = fault?.kind === "short-ranges" && range !== null ? Math.min(whole, start + fault.bytes - 1) : whole;
  res.writeHead(range === null ? 200 : 206, {
    "Content-Type": "application/octet-stream",
    "Content-Length": size === 0 ? 0 : end - start + 1,
    ...acceptRanges,
    ...(range === null ? {} : { "Content-Range": `bytes ${start}-${end}/${size}` }),
  });
  if (size === 0) {
    res.end();
    return;
  }
  createReadStream(file, { start, end, highWaterMark: 1 << 20 }).pipe(res);
}

function parseRange(header: string | undefined, size: number): [number, number] | "unsatisfiable" | null {
  const m = header === undefined ? null : /^bytes=(\d+)-(\d*)$/.exec(header);
  if (m === null) return null;
  const start = Number(m[1]);
  const end = m[2] === undefined || m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  return start >= size || end < start ? "unsatisfiable" : [start, end];
}

function readHead(file: string, bytes: number): Buffer {
  const buf = Buffer.alloc(bytes);
  const fd = openSync(file, "r");
  try {
    return buf.subarray(0, readSync(fd, buf, 0, bytes, 0));
  } finally {
    closeSync(fd);
  }
}

function serveZeros(res: ServerResponse, bytes: number, contentLength: boolean): void {
  res.writeHead(200, contentLength ? { "Content-Length": bytes } : {});
  const chunk = Buffer.alloc(64 << 10);
  let left = bytes;
  const zeros = new Readable({
    read() {
      if (left <= 0) {
        this.push(null);
        return;
      }
      const n = Math.min(left, chunk.length);
      left -= n;
      this.push(chunk.subarray(0, n));
    },
  });
  res.on("close", () => zeros.destroy());
  zeros.pipe(res);
}

// --- publishing -------------------------------------------------------------------------------------------

export interface PublishImage {
  version: string;
  arch?: string;
  /** The image bytes, or the path of an image built elsewhere (e.g. test/helpers/images.ts buildImage). */
  content: Buffer | string;
}

export interface PublishedImage {
  file: string;
  path: string;
  sha256: string;
  bytes: number;
}

export interface PublishOptions {
  name?: string;
  images: PublishImage[];
  /** Write SHA256SUMS.gpg signed with the process's test key: "binary" (like gpg --detach-sign) or "armored". */
  sign?: "binary" | "armored" | false;
  /** Extra raw lines appended to SHA256SUMS (garbage, traversal names, …). */
  extraLines?: string[];
}

/** The URL path of a published file, as the server logs it and setFault matches it. */
export function releasePath(file: string, name = "kata-containers"): string {
  return `/${name}/${file}`;
}

/**
 * Writes the sysupdate url-file layout, every file in one directory: `<dir>/<name>/SHA256SUMS` (+ .gpg) and
 * `<dir>/<name>/<name>-<version>-<arch>.raw`, as the sysext-bakery's per-extension release holds them.
 */
export async function publishRelease(
  dir: string,
  opts: PublishOptions,
): Promise<{ images: PublishedImage[]; sums: string; sumsPath: string }> {
  const name = opts.name ?? "kata-containers";
  mkdirSync(join(dir, name), { recursive: true });
  const images = opts.images.map((image) => {
    const file = `${name}-${image.version}-${image.arch ?? "x86-64"}.raw`;
    const bytes = typeof image.content === "string" ? readFileSync(image.content) : image.content;
    const path = join(dir, name, file);
    writeFileSync(path, bytes);
    return { file, path, sha256: sha256Hex(bytes), bytes: bytes.length };
  });
  const sums = [...images.map((i) => `${i.sha256}  ${i.file}`), ...(opts.extraLines ?? [])].join("\n").concat("\n");
  mkdirSync(join(dir, name), { recursive: true });
  const sumsPath = join(dir, name, "SHA256SUMS");
  writeFileSync(sumsPath, sums);
  if (opts.sign !== undefined && opts.sign !== false) {
    writeFileSync(`${sumsPath}.gpg`, await signDetached(Buffer.from(sums), opts.sign));
  }
  return { images, sums, sumsPath };
}

export function sha256Hex(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

export interface TestKey {
  privateKey: openpgp.PrivateKey;
  /** ASCII-armored public key: write it where [source] keyring points. */
  publicKeyArmored: string;
}

/** A fresh curve25519 signing key (a few milliseconds). */
export async function generateKeyPair(userId = "kata-sysextd test <test@example.invalid>"): Promise<TestKey> {
  const [name = "test", email = "test@example.invalid"] = userId.split(/ <|>/);
  const { privateKey, publicKey } = await openpgp.generateKey({
    type: "curve25519",
    userIDs: [{ name, email }],
    format: "armored",
  });
  return { privateKey: await openpgp.readPrivateKey({ armoredKey: privateKey }), publicKeyArmored: publicKey };
}

let processKey: Promise<TestKey> | null = null;

/** The release signing key of this test process, generated once. */
export function testSigningKey(): Promise<TestKey> {
  processKey ??= generateKeyPair();
  return processKey;
}

/** A detached signature over `data`, by `key` (default: the process's test key), made at `date` (default: now). */
export async function signDetached(
  data: Buffer,
  format: "binary" | "armored",
  key?: TestKey,
  date?: Date,
): Promise<Buffer> {
  const signer = key ?? (await testSigningKey());
  const message = await openpgp.createMessage({ binary: new Uint8Array(data) });
  const signingKeys = signer.privateKey;
  if (format === "armored") {
    return Buffer.from(await openpgp.sign({ message, signingKeys, detached: true, format: "armored", date }));
  }
  return Buffer.from(await openpgp.sign({ message, signingKeys, detached: true, format: "binary", date }));
}
