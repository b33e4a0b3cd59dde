// The HTTP/1.1 reader against real servers on 127.0.0.1: raw TCP servers that answer byte by byte exactly as
// scripted, and a TLS server with a certificate from a CA the test makes with openssl.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createServer as createTlsServer, type Server as TlsServer } from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { type FetchError, httpGet } from "../../../src/fetch/http.ts";
import { get, type WireOptions } from "../../../src/fetch/wire.ts";
import { makeCertificate } from "./support.ts";

const OPTIONS: WireOptions = { connectTimeoutMs: 2000, idleTimeoutMs: 2000 };

/** Each connection: the request head is recorded, then `answer` writes the response. */
function rawServer(answer: (socket: Socket, request: string) => unknown): Promise<RawServer> {
  const requests: string[] = [];
  const closed: Promise<void>[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on("error", () => undefined);
    closed.push(new Promise((resolve) => socket.once("close", () => resolve())));
    let head = "";
    const onData = (data: Buffer): void => {
      head += data.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      socket.off("data", onData);
      requests.push(head);
      void answer(socket, head);
    };
    socket.on("data", onData);
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      resolve({ server, url: new URL(`http://127.0.0.1:${port}/dir/file.raw?x=1`), requests, closed });
    }),
  );
}

interface RawServer {
  server: Server;
  url: URL;
  requests: string[];
  /** One promise per connection, settled when the server side saw it close. */
  closed: Promise<void>[];
}

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    for (const socket of sockets.splice(0)) socket.destroy();
    await new Promise((r) => s.close(() => r(undefined)));
  }
});

async function serve(answer: Parameters<typeof rawServer>[0]): Promise<RawServer> {
  const s = await rawServer(answer);
  servers.push(s.server);
  return s;
}

/** Reads the whole body, copying each chunk (they are views of reused buffers). */
async function readAll(url: URL, options: WireOptions = OPTIONS): Promise<{ status: number; body: Buffer }> {
  const res = await get(url, options);
  const chunks: Buffer[] = [];
  await res.body.read((chunk) => {
    chunks.push(Buffer.from(chunk));
  });
  return { status: res.status, body: Buffer.concat(chunks) };
}

const failure = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => null,
    (err: unknown) => err,
  );

describe("requests and framing", () => {
  test("sends a plain GET with Host, Connection: close and the caller's headers", async () => {
    const s = await serve((socket) => {
      socket.end("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    const got = await readAll(s.url, { ...OPTIONS, headers: { Range: "bytes=5-" } });
    expect(got.body.toString()).toBe("ok");
    const [request] = s.requests;
    expect(request?.split("\r\n")[0]).toBe("GET /dir/file.raw?x=1 HTTP/1.1");
    expect(request).toContain(`\r\nHost: 127.0.0.1:${s.url.port}\r\n`);
    expect(request).toContain("\r\nConnection: close\r\n");
    expect(request).toContain("\r\nAccept-Encoding: identity\r\n");
    expect(request).toContain("\r\nRange: bytes=5-\r\n");
  });

  test("a header value with a line break is refused before connecting", async () => {
    const s = await serve((socket) => {
      socket.end();
    });
    const err = await failure(get(s.url, { ...OPTIONS, headers: { Range: "bytes=0-\r\nX-Evil: 1" } }));
    expect(String(err)).toMatch(/bad request header Range/);
    await sleep(50);
    expect(s.requests).toEqual([]);
  });

  test("a head and body written one byte at a time", async () => {
    const body = randomBytes(300);
    const s = await serve(async (socket) => {
      const all = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body]);
      for (let i = 0; i < all.length; i++) {
        socket.write(all.subarray(i, i + 1));
        if (i % 16 === 0) await sleep(1);
      }
      socket.end();
    });
    const got = await readAll(s.url);
    expect(got.body.equals(body)).toBe(true);
  });

  test("interim 100 and 103 responses are skipped", async () => {
    const s = await serve((socket) =>
      socket.end("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\n\r\nrest"),
    );
    const got = await readAll(s.url);
    expect(got).toEqual({ status: 200, body: Buffer.from("rest") });
  });

  test("a chunked body across many writes; bytes after the last chunk ignored", async () => {
    const body = randomBytes(200_000);
    const s = await serve(async (socket) => {
      socket.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
      for (let at = 0; at < body.length; at += 7000) {
        const part = body.subarray(at, at + 7000);
        socket.write(`${part.length.toString(16)}\r\n`);
        socket.write(part);
        socket.write("\r\n");
        await sleep(0);
      }
      socket.end("0\r\n\r\nGARBAGE");
    });
    const got = await readAll(s.url);
    expect(got.body.equals(body)).toBe(true);
  });

  test("a body the server finishes before the caller starts reading is all there", async () => {
    const body = randomBytes(3 << 20); // more than one read buffer, less than the pool
    const s = await serve((socket) =>
      socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body])),
    );
    const res = await get(s.url, OPTIONS);
    await s.closed[0]; // the server has sent everything and closed before we read a byte
    const chunks: Buffer[] = [];
    await res.body.read((chunk) => {
      chunks.push(Buffer.from(chunk));
    });
    expect(Buffer.concat(chunks).equals(body)).toBe(true);
  });

  test("204 has no body even when the connection stays open", async () => {
    const s = await serve((socket) => {
      socket.write("HTTP/1.1 204 No Content\r\n\r\n");
    });
    expect(await readAll(s.url)).toEqual({ status: 204, body: Buffer.alloc(0) });
  });

  test.each([
    ["a head longer than 64 KiB", `HTTP/1.1 200 OK\r\nX: ${"a".repeat(70_000)}\r\n\r\n`, /head is longer than/],
    ["a response that is not HTTP", "SSH-2.0-OpenSSH_9.2\r\n\r\n", /not an HTTP\/1.x response/],
    [
      "two different Content-Lengths",
      "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nabcdef",
      /invalid Content-Length/,
    ],
    ["a header line without a colon", "HTTP/1.1 200 OK\r\nnonsense\r\n\r\n", /malformed response header line/],
  ])("%s fails the exchange with protocol", async (_name, response, message) => {
    const s = await serve((socket) => {
      socket.end(response);
    });
    const err = await failure(get(s.url, OPTIONS));
    expect(err).toMatchObject({ name: "WireError", kind: "protocol" });
    expect(String(err)).toMatch(message);
  });

  test("a head whose lines end in a bare LF (RFC 9112 allows it) is read", async () => {
    const s = await serve((socket) => {
      socket.write("HTTP/1.1 200 OK\nContent-Length: 3\nX-A: b\n\nabc"); // and the connection stays open
    });
    expect(await readAll(s.url)).toEqual({ status: 200, body: Buffer.from("abc") });
  });

  test("a trailer field longer than a chunk size line may be, and zero-padded chunk sizes", async () => {
    const s = await serve((socket) => {
      socket.end(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
          `0000000000000005\r\nhello\r\n0\r\nX-Checksum: ${"a".repeat(2000)}\r\n\r\n`,
      );
    });
    expect(await readAll(s.url)).toEqual({ status: 200, body: Buffer.from("hello") });
  });

  test("a chunk size line longer than 1024 bytes is still refused", async () => {
    const s = await serve((socket) => {
      socket.end(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=${"x".repeat(1100)}\r\nhello\r\n`);
    });
    const res = await get(s.url, OPTIONS);
    expect(await failure(res.body.read(() => undefined))).toMatchObject({
      kind: "protocol",
      message: "chunk size line longer than 1024 bytes",
    });
  });

  test("Transfer-Encoding wins over Content-Length, for the framing and for the size httpGet reports", async () => {
    const s = await serve((socket) => {
      socket.end(
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      );
    });
    const res = await httpGet(s.url.href, { ...OPTIONS, maxBytes: 1 << 20 });
    expect(res.contentLength).toBeNull();
    const chunks: string[] = [];
    await res.body.read((chunk) => void chunks.push(chunk.toString()));
    expect(chunks.join("")).toBe("hello");
  });

  test.each([
    ["a scheme other than http and https", "ftp://127.0.0.1/x.raw", {}, /unsupported URL scheme ftp:/],
    ["not a URL at all", "not a url", {}, /not a valid URL/],
    ["a header with a line break", "http://127.0.0.1:9/x.raw", { Range: "bytes=0-\r\nX: 1" }, /bad request header/],
  ])("%s is invalid, final, and points at the configuration", async (_name, url, headers, message) => {
    const err = await failure(httpGet(url, { ...OPTIONS, maxBytes: 1 << 20, headers }));
    expect(err).toMatchObject({ name: "FetchError", kind: "invalid", retryable: false });
    expect(String(err)).toMatch(message);
    expect((err as FetchError).remedy).toContain("[source] url");
  });

  test("a close before the head ends fails the exchange with reset", async () => {
    const s = await serve((socket) => {
      socket.end("HTTP/1.1 200 OK\r\nContent-Le");
    });
    const err = await failure(get(s.url, OPTIONS));
    expect(err).toMatchObject({ name: "WireError", kind: "reset" });
    expect(String(err)).toMatch(/before the response head/);
  });

  test("bad chunk framing in the body: the data before it is delivered, then protocol", async () => {
    const s = await serve((socket) => {
      socket.end("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nzz\r\n");
    });
    const res = await get(s.url, OPTIONS);
    const seen: string[] = [];
    const err = await failure(res.body.read((chunk) => void seen.push(chunk.toString())));
    expect(seen.join("")).toBe("abcd");
    expect(err).toMatchObject({ kind: "protocol", message: 'bad chunk size line "zz"' });
  });

  test("a chunked body closed before its last chunk is reset", async () => {
    const s = await serve((socket) => {
      socket.end("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n");
    });
    const res = await get(s.url, OPTIONS);
    const err = await failure(res.body.read(() => undefined));
    expect(err).toMatchObject({ kind: "reset", message: "connection closed before the last chunk" });
  });

  test("a body cut short of its Content-Length: the bytes that came are delivered, then reset", async () => {
    const s = await serve((socket) => {
      socket.end("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd");
    });
    const res = await get(s.url, OPTIONS);
    const seen: string[] = [];
    const err = await failure(res.body.read((chunk) => void seen.push(chunk.toString())));
    expect(seen.join("")).toBe("abcd");
    expect(err).toMatchObject({ kind: "reset", message: "body ended after 4 of 10 bytes" });
  });
});

describe("flow control and failures", () => {
  test("a slow sink pauses the socket: few buffers in use, no idle timeout while waiting for it", async () => {
    const body = randomBytes(24 << 20);
    const s = await serve((socket) =>
      socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body])),
    );
    const res = await get(s.url, { connectTimeoutMs: 2000, idleTimeoutMs: 150 });
    const buffers = new Set<ArrayBufferLike>();
    const hash = createHash("sha256");
    let calls = 0;
    await res.body.read(async (chunk) => {
      buffers.add(chunk.buffer);
      hash.update(chunk);
      calls += 1;
      if (calls === 3) await sleep(400); // longer than the idle timeout: our own wait, not the server's
    });
    expect(hash.digest("hex")).toBe(createHash("sha256").update(body).digest("hex"));
    // Eight buffers the sink may hold plus the socket's next read buffer.
    expect(buffers.size).toBeLessThanOrEqual(9);
  });

  test("a pool filled before the caller reads: waiting for a slow sink after that is no idle timeout", async () => {
    const body = randomBytes(24 << 20);
    const s = await serve((socket) =>
      socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body])),
    );
    const res = await get(s.url, { connectTimeoutMs: 2000, idleTimeoutMs: 200 });
    await sleep(100); // the body keeps arriving until every pool buffer is held and the socket pauses
    const hash = createHash("sha256");
    let calls = 0;
    await res.body.read(async (chunk) => {
      hash.update(chunk);
      calls += 1;
      if (calls <= 8) await sleep(500); // every held buffer stays held longer than the idle timeout
    });
    expect(hash.digest("hex")).toBe(createHash("sha256").update(body).digest("hex"));
  });

  test("a server that stops sending fails with the idle timeout", async () => {
    const s = await serve((socket) => {
      socket.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc");
    });
    const res = await get(s.url, { connectTimeoutMs: 2000, idleTimeoutMs: 200 });
    const err = await failure(res.body.read(() => undefined));
    expect(err).toMatchObject({ kind: "timeout", message: "no data for 200 ms" });
  });

  test("what the sink throws fails the read and closes the connection", async () => {
    const s = await serve((socket) => {
      socket.write("HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n");
      const timer = setInterval(() => socket.write(Buffer.alloc(65536)), 1);
      socket.on("close", () => clearInterval(timer));
    });
    const res = await get(s.url, OPTIONS);
    let calls = 0;
    const err = await failure(
      res.body.read(async () => {
        calls += 1;
        if (calls === 5) throw new Error("ENOSPC: no space left on device");
      }),
    );
    expect(String(err)).toContain("ENOSPC");
    await s.closed[0];
  });

  test("an AbortSignal fails the read with aborted", async () => {
    const s = await serve((socket) => {
      socket.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc");
    });
    const controller = new AbortController();
    const res = await get(s.url, { ...OPTIONS, signal: controller.signal });
    const reading = failure(res.body.read(() => undefined));
    controller.abort();
    expect(await reading).toMatchObject({ kind: "aborted" });
    await s.closed[0];
  });

  test("an IPv6 literal URL connects to [::1] and sends it as the Host", async () => {
    const v6 = createServer((socket) => {
      sockets.push(socket);
      socket.once("data", (data: Buffer) => {
        const host = /\r\nHost: ([^\r]+)\r\n/.exec(data.toString("latin1"))?.[1] ?? "";
        socket.end(`HTTP/1.1 200 OK\r\nContent-Length: ${host.length}\r\n\r\n${host}`);
      });
    });
    servers.push(v6);
    await new Promise<void>((resolve) => v6.listen(0, "::1", () => resolve()));
    const address = v6.address();
    const port = typeof address === "object" && address !== null ? address.port : 0;
    const got = await readAll(new URL(`http://[::1]:${port}/x`));
    expect(got.body.toString()).toBe(`[::1]:${port}`);
  });

  test("a refused connection is a connect failure", async () => {
    const s = await serve(() => undefined);
    const { port } = s.url;
    await new Promise((r) => s.server.close(() => r(undefined)));
    servers.pop();
    const err = await failure(get(new URL(`http://127.0.0.1:${port}/`), OPTIONS));
    expect(err).toMatchObject({ kind: "connect" });
    expect(String(err)).toContain("ECONNREFUSED");
  });
});

describe("https", () => {
  let dir: string;
  let ca: Buffer;
  let tlsServer: TlsServer;
  let url: URL;
  const body = randomBytes(5 << 20);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "kata-wire-tls-"));
    const certificate = makeCertificate(dir);
    ca = certificate.ca;
    tlsServer = createTlsServer({ key: certificate.key, cert: certificate.cert }, (socket) => {
      socket.on("error", () => undefined);
      socket.once("data", () => {
        socket.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        for (let at = 0; at < body.length; at += 1 << 20) {
          const part = body.subarray(at, at + (1 << 20));
          socket.write(`${part.length.toString(16)}\r\n`);
          socket.write(part);
          socket.write("\r\n");
        }
        socket.end("0\r\n\r\n");
      });
    });
    await new Promise<void>((resolve) => tlsServer.listen(0, "127.0.0.1", () => resolve()));
    const address = tlsServer.address();
    url = new URL(`https://localhost:${typeof address === "object" && address !== null ? address.port : 0}/x.raw`);
  });

  afterAll(async () => {
    if (tlsServer !== undefined) await new Promise((r) => tlsServer.close(() => r(undefined)));
    rmSync(dir, { recursive: true, force: true });
  });

  test("a server whose certificate chains to the given CA: the body arrives intact", async () => {
    const got = await readAll(url, { ...OPTIONS, ca });
    expect(got.status).toBe(200);
    expect(got.body.equals(body)).toBe(true);
  });

  test("a certificate from an unknown CA is a tls failure", async () => {
    const err = await failure(get(url, OPTIONS));
    expect(err).toMatchObject({ kind: "tls" });
    expect(String(err)).toMatch(/TLS handshake failed: .*(self-signed|unable to (get|verify))/i);
  });

  test("a certificate for another host name is a tls failure", async () => {
    const err = await failure(get(new URL(url.href.replace("localhost", "127.0.0.1")), { ...OPTIONS, ca }));
    expect(err).toMatchObject({ kind: "tls" });
    expect(String(err)).toMatch(/TLS handshake failed: .*altnames/);
  });

  test("an https body delimited only by the connection's end is refused: a cut would look complete", async () => {
    const certificate = makeCertificate(mkdtempSync(join(dir, "unframed-")));
    const unframed = createTlsServer({ key: certificate.key, cert: certificate.cert }, (socket) => {
      socket.on("error", () => undefined);
      socket.once("data", () => socket.end("HTTP/1.1 200 OK\r\n\r\naaaa  image-1.raw\n"));
    });
    await new Promise<void>((resolve) => unframed.listen(0, "127.0.0.1", () => resolve()));
    try {
      const address = unframed.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      const err = await failure(
        get(new URL(`https://localhost:${port}/SHA256SUMS`), { ...OPTIONS, ca: certificate.ca }),
      );
      expect(err).toMatchObject({ kind: "protocol" });
      expect(String(err)).toMatch(/https response without Content-Length or chunked framing/);
    } finally {
      await new Promise((r) => unframed.close(() => r(undefined)));
    }
  });

  test("https to a server that speaks plain http is a tls failure", async () => {
    // Answers the ClientHello as a plain http server answers what it cannot parse.
    const plain = createServer((socket) => {
      sockets.push(socket);
      socket.once("data", () => socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"));
    });
    servers.push(plain);
    await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", () => resolve()));
    const address = plain.address();
    const port = typeof address === "object" && address !== null ? address.port : 0;
    const err = await failure(get(new URL(`https://127.0.0.1:${port}/x.raw`), OPTIONS));
    expect(err).toMatchObject({ kind: "tls" });
    expect(String(err)).toMatch(/TLS handshake failed: .*wrong version number/);
  });
});
