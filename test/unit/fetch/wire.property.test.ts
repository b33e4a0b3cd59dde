// Properties of the HTTP/1.1 reader's pure parts over generated input (fast-check): the response head parser
// and the chunked decoder, fed whole and in arbitrary pieces. Whatever the bytes, the result is the body, or a
// WireError of kind "protocol"; never another exception, never a result that depends on where the input was cut.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Chunked, parseHead, WireError } from "../../../src/fetch/wire.ts";

type Outcome = { ok: true; body: string; complete: boolean } | { ok: false; error: string };

/** Feeds `wire` to a fresh decoder in pieces cut at `cuts` (each piece inside a larger pooled-like buffer). */
function decode(wire: Uint8Array, cuts: number[]): Outcome {
  const decoder = new Chunked();
  const out: Buffer[] = [];
  const points = [...new Set(cuts.map((c) => Math.min(c, wire.length)))].sort((a, b) => a - b);
  let from = 0;
  try {
    for (const cut of [...points, wire.length]) {
      const buffer = Buffer.concat([Buffer.from("xx"), wire.subarray(from, cut), Buffer.from("yy")]);
      decoder.feed(buffer, 2, 2 + cut - from, (a, b) => {
        // Only bytes of this piece, in order, never past it.
        expect(a >= 2 && b <= 2 + cut - from && a <= b).toBe(true);
        out.push(Buffer.from(buffer.subarray(a, b)));
      });
      from = cut;
    }
  } catch (err) {
    // Every failure is classified: a WireError of kind "protocol".
    if (!(err instanceof WireError) || err.kind !== "protocol") throw err;
    return { ok: false, error: err.message };
  }
  return { ok: true, body: Buffer.concat(out).toString("latin1"), complete: decoder.complete };
}

const cuts = (max: number) => fc.array(fc.nat({ max: max + 2 }), { maxLength: 12 });
const hexDigit = fc.constantFrom(..."0123456789abcdefABCDEF");
const extension = fc.stringMatching(/^(;[a-z]{1,5}(=[a-z0-9]{0,5})?){0,2}[ \t]{0,2}$/);
const eol = fc.constantFrom("\r\n", "\n");

/** A chunked encoding of `parts`, with the liberties RFC 9112 allows: case, leading zeros, extensions, LF. */
const encoded = fc
  .record({
    parts: fc.array(fc.uint8Array({ minLength: 1, maxLength: 200 }), { maxLength: 6 }),
    upper: fc.boolean(),
    zeros: fc.nat({ max: 3 }),
    ext: extension,
    lineEnd: eol,
    trailers: fc.array(fc.stringMatching(/^[A-Za-z-]{1,8}: [ -~]{0,20}$/), { maxLength: 3 }),
  })
  .map(({ parts, upper, zeros, ext, lineEnd, trailers }) => {
    const size = (n: number) => {
      const hex = "0".repeat(zeros) + n.toString(16);
      return upper ? hex.toUpperCase() : hex;
    };
    const pieces: Buffer[] = parts.flatMap((p) => [
      Buffer.from(`${size(p.length)}${ext}${lineEnd}`),
      Buffer.from(p),
      Buffer.from("\r\n"),
    ]);
    pieces.push(Buffer.from(`${size(0)}${ext}${lineEnd}${trailers.map((t) => `${t}${lineEnd}`).join("")}${lineEnd}`));
    return { wire: Buffer.concat(pieces), body: Buffer.concat(parts).toString("latin1") };
  });

/** Mutations of a valid encoding: a byte flipped, inserted or removed; or plain noise. */
const hostile = fc.oneof(
  fc.uint8Array({ maxLength: 2000 }),
  fc
    .tuple(encoded, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom("flip", "insert", "delete"))
    .map(([{ wire }, at, byte, how]) => {
      const i = wire.length === 0 ? 0 : at % wire.length;
      if (how === "flip") return Buffer.concat([wire.subarray(0, i), Buffer.from([byte]), wire.subarray(i + 1)]);
      if (how === "insert") return Buffer.concat([wire.subarray(0, i), Buffer.from([byte]), wire.subarray(i)]);
      return Buffer.concat([wire.subarray(0, i), wire.subarray(i + 1)]);
    }),
  fc
    .tuple(fc.array(hexDigit, { minLength: 1, maxLength: 20 }), extension, eol, fc.uint8Array({ maxLength: 64 }))
    .map(([digits, ext, lineEnd, rest]) => Buffer.concat([Buffer.from(`${digits.join("")}${ext}${lineEnd}`), rest])),
);

describe("the chunked decoder", () => {
  it("decodes every valid encoding to its body, wherever it is cut, and ignores what follows", () => {
    fc.assert(
      fc.property(encoded, cuts(2000), fc.uint8Array({ maxLength: 20 }), ({ wire, body }, at, after) => {
        const outcome = decode(Buffer.concat([wire, after]), at);
        expect(outcome).toEqual({ ok: true, body, complete: true });
      }),
      { numRuns: 300 },
    );
  });

  it("on any input: the body or a protocol error, the same one for every way of cutting it", () => {
    fc.assert(
      fc.property(hostile, cuts(2000), cuts(2000), (wire, a, b) => {
        const whole = decode(wire, []);
        expect(decode(wire, a)).toEqual(whole);
        expect(decode(wire, b)).toEqual(whole);
        // Nothing comes out that was not in the input.
        if (whole.ok) expect(whole.body.length).toBeLessThanOrEqual(wire.length);
      }),
      { numRuns: 500 },
    );
  });

  it("holds no more than a bounded line: a size line or trailer without end fails at its cap", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1025, max: 5000 }),
        fc.integer({ min: 64 * 1024 + 1, max: 100_000 }),
        cuts(100_000),
        (sizeLine, trailer, at) => {
          const longSize = decode(Buffer.alloc(sizeLine, "1"), at);
          expect(longSize).toEqual({ ok: false, error: "chunk size line longer than 1024 bytes" });
          const longTrailer = decode(Buffer.concat([Buffer.from("0\r\n"), Buffer.alloc(trailer, "a")]), at);
          expect(longTrailer).toEqual({ ok: false, error: "chunked trailer longer than 65536 bytes" });
        },
      ),
      { numRuns: 50 },
    );
  });
});

const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/);
/** A field value: visible characters with inner spaces or tabs, no leading or trailing whitespace. */
const value = fc.stringMatching(/^([!-~\x80-\xff]([ \t!-~\x80-\xff]{0,20}[!-~\x80-\xff])?)?$/);

describe("the response head parser", () => {
  it("reads every well-formed head: status, reason, lower-case names, repeats joined", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 100, max: 999 }),
        fc.stringMatching(/^[ -~]{0,20}$/),
        fc.array(fc.tuple(token, value, fc.stringMatching(/^[ \t]{0,2}$/)), { maxLength: 10 }),
        eol,
        (status, reason, fields, lineEnd) => {
          const lines = [`HTTP/1.1 ${status}${reason === "" ? "" : ` ${reason}`}`];
          // A Map: a field named __proto__ is a field like any other.
          const expected = new Map<string, string>();
          for (const [name, v, ws] of fields) {
            lines.push(`${name}:${ws}${v}${ws}`);
            const key = name.toLowerCase();
            const before = expected.get(key);
            expected.set(key, before === undefined ? v : `${before}, ${v}`);
          }
          const head = parseHead(lines.join(lineEnd));
          expect(head.status).toBe(status);
          expect(head.statusText).toBe(reason);
          // Sorted: an object lists integer-like names ("0") first whatever their order.
          const sorted = (entries: [string, string][]) => entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
          expect(sorted(Object.entries(head.headers))).toEqual(sorted([...expected]));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("on any text: a parsed head or a protocol error, never another exception", () => {
    const headish = fc.oneof(
      fc.string({ unit: "binary", maxLength: 300 }),
      fc
        .array(fc.string({ unit: "binary-ascii", maxLength: 40 }), { maxLength: 8 })
        .map((l) => `HTTP/1.1 200 OK\r\n${l.join("\r\n")}`),
    );
    fc.assert(
      fc.property(headish, (text) => {
        try {
          const head = parseHead(text);
          expect(Number.isInteger(head.status)).toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(WireError);
          expect((err as WireError).kind).toBe("protocol");
        }
      }),
      { numRuns: 500 },
    );
  });
});
