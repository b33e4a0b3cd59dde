// The pure parts of the HTTP/1.1 reader: the response head and chunked framing, fed in every possible split.
import { randomBytes } from "node:crypto";
import { describe, expect, test } from "vitest";
import { Chunked, parseHead, WireError } from "../../../src/fetch/wire.ts";

describe("parseHead", () => {
  test("status, reason and fields with lower-case names; repeats joined", () => {
    const head = parseHead(
      "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 5-9/10\r\nX-A: 1\r\nx-a:2\r\nEmpty:\r\nSpaced:  v  ",
    );
    expect(head).toEqual({
      status: 206,
      statusText: "Partial Content",
      headers: { "content-range": "bytes 5-9/10", "x-a": "1, 2", empty: "", spaced: "v" },
    });
  });

  test("fields named like Object.prototype members are fields like any other", () => {
    const { headers } = parseHead("HTTP/1.1 200 OK\r\nConstructor: x\r\n__proto__: y\r\nToString: z");
    expect(Object.entries(headers)).toEqual([
      ["constructor", "x"],
      ["__proto__", "y"],
      ["tostring", "z"],
    ]);
  });

  test("HTTP/1.0 and a status line without a reason", () => {
    expect(parseHead("HTTP/1.0 200")).toMatchObject({ status: 200, statusText: "", headers: {} });
  });

  test.each([
    ["not HTTP", "SSH-2.0-OpenSSH_9.2", /not an HTTP\/1.x response/],
    ["HTTP/2 preface", "HTTP/2 200", /not an HTTP\/1.x response/],
    ["a folded field", "HTTP/1.1 200 OK\r\nA: 1\r\n continued", /malformed response header line/],
    ["a field without a colon", "HTTP/1.1 200 OK\r\nnonsense", /malformed response header line/],
    ["a space before the colon", "HTTP/1.1 200 OK\r\nName : v", /malformed response header line/],
  ])("rejects %s", (_name, text, message) => {
    expect(() => parseHead(text)).toThrow(message);
    expect(() => parseHead(text)).toThrow(WireError);
  });
});

/** Runs `wire` through a Chunked decoder in pieces cut at `cuts`; returns the body bytes it emitted. */
function decode(wire: Buffer, cuts: number[]): { body: Buffer; decoder: Chunked } {
  const decoder = new Chunked();
  const out: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts, wire.length]) {
    // Each piece in a buffer of its own, with other bytes around it, as a socket read into a pooled buffer.
    const buffer = Buffer.concat([Buffer.from("xx"), wire.subarray(from, cut), Buffer.from("yy")]);
    decoder.feed(buffer, 2, 2 + cut - from, (a, b) => out.push(Buffer.from(buffer.subarray(a, b))));
    from = cut;
  }
  return { body: Buffer.concat(out), decoder };
}

function chunked(parts: Buffer[], trailer = ""): Buffer {
  const pieces = parts.flatMap((p) => [Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from("\r\n")]);
  return Buffer.concat([...pieces, Buffer.from(`0\r\n${trailer}\r\n`)]);
}

describe("chunked framing", () => {
  const parts = [Buffer.from("hello"), randomBytes(300), Buffer.from("\r\n0\r\n"), randomBytes(17)];
  const body = Buffer.concat(parts);
  const wire = chunked(parts, "X-Checksum: abc\r\n");

  test("every single split point gives the same body and completes", () => {
    for (let cut = 0; cut <= wire.length; cut++) {
      const { body: got, decoder } = decode(wire, [cut]);
      expect(got.equals(body), `split at ${cut}`).toBe(true);
      expect(decoder.complete).toBe(true);
      expect(decoder.atEof()).toBeNull();
    }
  });

  test("one byte at a time", () => {
    const cuts = Array.from({ length: wire.length - 1 }, (_, i) => i + 1);
    const { body: got, decoder } = decode(wire, cuts);
    expect(got.equals(body)).toBe(true);
    expect(decoder.complete).toBe(true);
  });

  test("upper-case hex, extensions and bare LF line ends", () => {
    const text = "A;name=value\r\n0123456789\r\n1 ;x\n!\r\n0\n\n";
    const { body: got, decoder } = decode(Buffer.from(text), []);
    expect(got.toString()).toBe("0123456789!");
    expect(decoder.complete).toBe(true);
  });

  test("bytes after the last chunk are not body", () => {
    const { body: got } = decode(Buffer.concat([wire, Buffer.from("HTTP/1.1 200 OK\r\n\r\n")]), []);
    expect(got.equals(body)).toBe(true);
  });

  test("cut before the last chunk: atEof says so", () => {
    const { decoder } = decode(wire.subarray(0, wire.length - 10), []);
    expect(decoder.complete).toBe(false);
    expect(decoder.atEof()).toBe("connection closed before the last chunk");
  });

  test.each([
    ["a size that is not hex", "zz\r\n"],
    ["an empty size line", "\r\n"],
    ["a size of 14 hex digits", "10000000000000\r\n"],
    ["data not followed by CRLF", "3\r\nabcX\r\n"],
  ])("rejects %s", (_name, text) => {
    expect(() => decode(Buffer.from(text), [])).toThrow(WireError);
  });

  test("a size line without end is cut off at 1024 bytes", () => {
    expect(() => decode(Buffer.from("1".repeat(2000)), [])).toThrow(/longer than 1024 bytes/);
  });
});
