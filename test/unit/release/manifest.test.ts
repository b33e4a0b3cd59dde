import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  MAX_MANIFEST_CHARS,
  parseManifest,
  summarizeRejected,
  unusableManifest,
} from "../../../src/release/manifest.ts";

const A = "a".repeat(64);
const B = "B".repeat(64);

describe("parseManifest", () => {
  it("reads text and binary mode lines", () => {
    const m = parseManifest(`${A}  kata-containers-3.32.0-x86-64.raw\n${B} *kata-containers-3.31.0-x86-64.raw\n`);
    expect(m.rejected).toEqual([]);
    expect(m.entries).toEqual([
      { file: "kata-containers-3.32.0-x86-64.raw", sha256: A, line: 1 },
      { file: "kata-containers-3.31.0-x86-64.raw", sha256: "b".repeat(64), line: 2 },
    ]);
  });

  it.each([
    [`${A} kata.raw`, 'expected "<sha256>  <file>"'],
    [`${A}\tkata.raw`, 'expected "<sha256>  <file>"'],
    [`${A.slice(1)}  kata.raw`, "expected 64 hex digits"],
    [`${"g".repeat(64)}  kata.raw`, "expected 64 hex digits"],
    [`${A}  ../etc/passwd`, "path separator"],
    [`${A}  /etc/passwd`, "path separator"],
    [`${A}  ..`, 'contains ".."'],
    [`${A}  kata raw`, "characters outside"],
    [`${A}   kata.raw`, "characters outside"],
    // Only one CR before the LF is a line end; any other is refused, never part of a file name.
    [`${A}  kata.raw\r\r`, 'expected "<sha256>  <file>"'],
    [`${A}  ka\rta.raw`, 'expected "<sha256>  <file>"'],
    [`${A}  .hidden.raw`, 'starts with "."'],
    [`${A}  -x.raw`, 'starts with "-"'],
    ["# a comment", "expected 64 hex digits"],
    ["   ", "blank line with whitespace"],
    [`${A}  `, "is empty"],
  ])("rejects %j", (line, why) => {
    const m = parseManifest(`${A}  good.raw\n${line}\n`);
    expect(m.entries.map((e) => e.file)).toEqual(["good.raw"]);
    expect(m.rejected).toHaveLength(1);
    expect(m.rejected[0]?.line).toBe(2);
    expect(m.rejected[0]?.message).toContain(why);
  });

  it("reads CRLF line ends as sha256sum -c does: one CR before the LF is not part of the line", () => {
    const m = parseManifest(
      `${A}  kata-containers-3.32.0-x86-64.raw\r\n\r\n${B} *cloud-hypervisor-45.0-x86-64.raw\r\n`,
    );
    expect(m.rejected).toEqual([]);
    expect(m.entries).toEqual([
      { file: "kata-containers-3.32.0-x86-64.raw", sha256: A, line: 1 },
      { file: "cloud-hypervisor-45.0-x86-64.raw", sha256: "b".repeat(64), line: 3 },
    ]);
    // Without a final newline too.
    expect(parseManifest(`${A}  x.raw\r`).entries.map((e) => e.file)).toEqual(["x.raw"]);
  });

  it("calls a document without one valid line unusable, saying what it looked like", () => {
    const html = `<!DOCTYPE html>\n<html lang="en">\n<head><title>Index</title></head>\n${"<p>x</p>\n".repeat(3000)}`;
    const err = unusableManifest(parseManifest(html), html, "https://mirror.example/kata-containers/SHA256SUMS");
    expect(err?.code).toBe("manifest-invalid");
    expect(err?.message).toBe(
      'https://mirror.example/kata-containers/SHA256SUMS is not a SHA256SUMS: no line of it is valid (3003 lines rejected, first line 1: expected 64 hex digits, got "<!DOCTYPE")',
    );
    expect(err?.remedy).toBe(
      'check [source] url: what it serves is an HTML page (it begins "<!DOCTYPE html> <html lang=\\"en\\"> <head><title>Index</title><"); if the url is right, the publisher must fix its SHA256SUMS',
    );
    const junk = `${"not a digest\n".repeat(5)}`;
    expect(unusableManifest(parseManifest(junk), junk, "u")?.remedy).toContain(
      'what it serves is 65 characters beginning "not a digest not a digest not a digest not a digest not a di"',
    );
    // Nothing published yet, or one good line among bad ones: not unusable.
    expect(unusableManifest(parseManifest(""), "", "u")).toBeNull();
    const mixed = `junk\n${A}  x.raw\n`;
    expect(unusableManifest(parseManifest(mixed), mixed, "u")).toBeNull();
  });

  it("drops a file listed with two different digests, keeps identical repeats", () => {
    const m = parseManifest(`${A}  x.raw\n${B}  x.raw\n${A}  y.raw\n${A}  y.raw\n`);
    expect(m.entries.map((e) => e.file)).toEqual(["y.raw"]);
    expect(m.rejected.map((r) => r.line)).toEqual([1, 2]);
  });

  it("accepts empty lines and an empty document", () => {
    expect(parseManifest("")).toEqual({ entries: [], rejected: [] });
    expect(parseManifest(`\n${A}  x.raw\n\n`).entries).toHaveLength(1);
  });

  it("refuses an oversized document as a whole", () => {
    const m = parseManifest(`${A}  x.raw\n`.repeat(300_000));
    expect(m.entries).toEqual([]);
    expect(m.rejected[0]?.message).toContain("larger than");
  });

  it("summarizes rejections by count and the first one's reason", () => {
    expect(summarizeRejected([])).toBeNull();
    expect(summarizeRejected(parseManifest("# one\n").rejected)).toBe(
      '1 line rejected, line 1: expected 64 hex digits, got "#"',
    );
    expect(summarizeRejected(parseManifest(`x\n${A}  ok.raw\ny\n`).rejected)).toBe(
      '2 lines rejected, first line 1: expected 64 hex digits, got "x"',
    );
    expect(summarizeRejected(parseManifest("x".repeat(MAX_MANIFEST_CHARS + 1)).rejected)).toContain("larger than");
  });

  it("never throws; every line is either an entry or rejected, never both", () => {
    const line = fc.oneof(
      fc.string({ unit: "binary", maxLength: 90 }),
      fc
        .tuple(
          fc.stringMatching(/^[0-9a-f]{64}$/),
          fc.constantFrom("  ", " *", " ", "\t"),
          fc.string({ maxLength: 20 }),
        )
        .map(([h, s, f]) => `${h}${s}${f}`),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 20 }), (lines) => {
        const text = lines.join("\n");
        const m = parseManifest(text);
        for (const e of m.entries) {
          expect(e.sha256).toMatch(/^[0-9a-f]{64}$/);
          expect(e.file).toMatch(/^[A-Za-z0-9._+~^-]+$/);
          expect(e.file.includes("..")).toBe(false);
          expect(m.rejected.some((r) => r.line === e.line)).toBe(false);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
