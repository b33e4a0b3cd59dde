// Properties of the HTTP/1.1 reader against a real server on 127.0.0.1 that writes generated responses in
// generated pieces (fast-check): a well-formed response always gives its body; any response at all ends, within
// the idle timeout, in a body or a WireError of a known kind; and a server that never stops sending a head or
// interim responses is cut off at the head's cap, not buffered without end.
import { createServer, type Server, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { get, WireError } from "../../../src/fetch/wire.ts";

/** What the server does with the next connection: write these pieces, then close (or keep writing `forever`). */
let script: { pieces: Buffer[]; forever?: () => Buffer } = { pieces: [] };
let server: Server;
let url: URL;
const sockets = new Set<Socket>();

beforeAll(async () => {
  server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => sockets.delete(socket));
    const { pieces, forever } = script;
    socket.once("data", async () => {
      for (const piece of pieces) {
        if (socket.destroyed) return;
        socket.write(piece);
        await sleep(0); // a piece of its own on the wire, most of the time
      }
      while (forever !== undefined && !socket.destroyed) {
        if (!socket.write(forever()))
          await new Promise((resolve) => socket.once("drain", resolve).once("close", resolve));
      }
      socket.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  url = new URL(`http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}/f`);
});
afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => server.close(resolve));
});

const IDLE_MS = 5000;

/** One GET through the reader: the body, or the classified failure. Fails the test on anything else. */
async function fetchOnce(): Promise<
  { ok: true; status: number; body: Buffer } | { ok: false; kind: string; message: string }
> {
  try {
    const res = await get(url, { connectTimeoutMs: 2000, idleTimeoutMs: IDLE_MS });
    const chunks: Buffer[] = [];
    await res.body.read((chunk) => {
      chunks.push(Buffer.from(chunk));
    });
    return { ok: true, status: res.status, body: Buffer.concat(chunks) };
  } catch (err) {
    if (!(err instanceof WireError)) throw err;
    return { ok: false, kind: err.kind, message: err.message };
  }
}

/** `bytes` cut at `at` into pieces. */
function split(bytes: Buffer, at: number[]): Buffer[] {
  const points = [...new Set(at.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    if (p > from) pieces.push(bytes.subarray(from, p));
    from = Math.max(from, p);
  }
  return pieces;
}

const body = fc.uint8Array({ maxLength: 3000 }).map((b) => Buffer.from(b));
const framed = fc
  .tuple(body, fc.constantFrom("length", "chunked", "close"), fc.array(fc.nat({ max: 20 }), { maxLength: 4 }))
  .map(([payload, framing, sizes]) => {
    let encoded: Buffer;
    let header: string;
    if (framing === "length") {
      header = `Content-Length: ${payload.length}\r\n`;
      encoded = payload;
    } else if (framing === "chunked") {
      header = "Transfer-Encoding: chunked\r\n";
      const parts: Buffer[] = [];
      let at = 0;
      for (const size of [...sizes.map((s) => s * 100 + 1), payload.length]) {
        const part = payload.subarray(at, at + size);
        at += part.length;
        if (part.length > 0) parts.push(Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from("\r\n"));
      }
      parts.push(Buffer.from("0\r\n\r\n"));
      encoded = Buffer.concat(parts);
    } else {
      header = "";
      encoded = payload;
    }
    const interim = sizes.length % 2 === 1 ? "HTTP/1.1 100 Continue\r\n\r\n" : "";
    const wire = Buffer.concat([Buffer.from(`${interim}HTTP/1.1 200 OK\r\n${header}Server: t\r\n\r\n`), encoded]);
    return { wire, payload };
  });
const cuts = fc.array(fc.nat(), { maxLength: 10 });

describe("the reader over a real socket", () => {
  it("gives the body of every well-formed response, however the server cuts its writes", async () => {
    await fc.assert(
      fc.asyncProperty(framed, cuts, async ({ wire, payload }, at) => {
        script = { pieces: split(wire, at) };
        const got = await fetchOnce();
        expect(got).toEqual({ ok: true, status: 200, body: payload });
      }),
      { numRuns: 60 },
    );
  }, 120_000);

  it("ends every exchange, whatever the server sends, in a body or a classified error", async () => {
    const mutated = fc
      .tuple(framed, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean())
      .map(([{ wire }, at, byte, insert]) => {
        const i = at % (wire.length + 1);
        return Buffer.concat([wire.subarray(0, i), Buffer.from([byte]), wire.subarray(insert ? i : i + 1)]);
      });
    const anything = fc.oneof(
      mutated,
      framed.map(({ wire }) => wire.subarray(0, Math.floor(wire.length / 2))),
      fc.uint8Array({ maxLength: 500 }).map((b) => Buffer.from(b)),
    );
    await fc.assert(
      fc.asyncProperty(anything, cuts, async (wire, at) => {
        script = { pieces: split(wire, at) };
        const got = await fetchOnce();
        // The server closes after writing: the end is noticed from the bytes and the close, never by waiting out
        // the idle timeout (a "timeout" would mean the reader hung on what it had).
        if (!got.ok) expect(["protocol", "reset"], `${got.kind}: ${got.message}`).toContain(got.kind);
      }),
      { numRuns: 80 },
    );
  }, 120_000);

  it.each([
    [
      "a head that never ends",
      () => Buffer.from("X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"),
      "HTTP/1.1 200 OK\r\n",
    ],
    ["interim responses without end", () => Buffer.from("HTTP/1.1 100 Continue\r\n\r\n"), ""],
    [
      "a chunk size line without end",
      () => Buffer.from("f".repeat(512)),
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
    [
      "a trailer without end",
      () => Buffer.from("X-T: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"),
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
    ],
  ])(
    "%s is cut off at its cap with a protocol error",
    async (_name, forever, start) => {
      script = { pieces: [Buffer.from(start)], forever };
      const got = await fetchOnce();
      expect(got).toMatchObject({ ok: false, kind: "protocol" });
    },
    10_000,
  );
});
