import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compareVersions, satisfies, toRange, toSemver } from "../../../src/release/version.ts";

// The examples of the UAPI Version Format Specification. Where the spec's list and systemd disagree, the
// expectation is systemd's (checked against systemd-analyze in the integration test) and marked.
const SPEC: [string, "<" | "=" | ">", string][] = [
  ["11", "=", "11"],
  ["systemd-123", "=", "systemd-123"],
  ["bar-123", "<", "foo-123"],
  ["123a", ">", "123"],
  ["123.a", ">", "123"],
  ["123.a", "<", "123.b"],
  ["123a", ">", "123.a"],
  ["11α", "=", "11β"],
  ["A", "<", "a"],
  ["", "<", "0"],
  ["0.", ">", "0"],
  ["0.0", ">", "0"],
  ["0", ">", "~"], // spec lists 0 < ~; systemd 252 says 0 > ~
  ["", ">", "~"], // spec lists '' < ~; systemd 252 says '' > ~
  ["1_", "=", "1"],
  ["_1", "=", "1"],
  ["1_", "<", "1.2"],
  ["1_2_3", ">", "1.3.3"],
  ["1+", "=", "1"],
  ["+1", "=", "1"],
  ["1+", "<", "1.2"],
  ["1+2+3", ">", "1.3.3"],
];

// systemd's own documented order, oldest first (string-util-fundamental.c).
const SYSTEMD_ORDER = [
  "122.1",
  "123~rc1-1",
  "123",
  "123-a",
  "123-a.1",
  "123-1",
  "123-1.1",
  "123^post1",
  "123.a-1",
  "123.1-1",
  "123a-1",
  "124-1",
];

const SIGN = { "<": -1, "=": 0, ">": 1 } as const;

describe("compareVersions (strverscmp_improved)", () => {
  it.each(SPEC)("%j %s %j", (a, op, b) => {
    expect(compareVersions(a, b)).toBe(SIGN[op]);
    expect(compareVersions(b, a)).toBe(-SIGN[op] || 0);
  });

  it("sorts systemd's documented example list", () => {
    const shuffled = [...SYSTEMD_ORDER].reverse();
    expect(shuffled.sort(compareVersions)).toEqual(SYSTEMD_ORDER);
  });

  it.each([
    ["4593.2.5", "<", "4593.2.10"],
    ["4593.2.5", "<", "4650.0.0"],
    ["3.32.0", "<", "4.0.0"],
    ["4.0.0~rc1", "<", "4.0.0"],
    ["007", "=", "7"],
    ["1.0", "<", "1.0.0"],
  ] as const)("Flatcar and Kata versions: %s %s %s", (a, op, b) => {
    expect(compareVersions(a, b)).toBe(SIGN[op]);
  });

  const version = fc.string({ unit: fc.constantFrom(..."0123456789aZ.-~^_+α".split("")), maxLength: 12 });

  it("is reflexive and antisymmetric, and never throws", () => {
    fc.assert(
      fc.property(version, version, (a, b) => {
        expect(compareVersions(a, a)).toBe(0);
        expect(compareVersions(a, b)).toBe(-compareVersions(b, a) || 0);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), fc.string(), (a, b) => [-1, 0, 1].includes(compareVersions(a, b))),
    );
  });

  it("is transitive", () => {
    fc.assert(
      fc.property(version, version, version, (a, b, c) => {
        const ab = compareVersions(a, b);
        const bc = compareVersions(b, c);
        if (ab <= 0 && bc <= 0) expect(compareVersions(a, c)).toBeLessThanOrEqual(0);
        if (ab >= 0 && bc >= 0) expect(compareVersions(a, c)).toBeGreaterThanOrEqual(0);
        if (ab === 0) expect(compareVersions(a, c)).toBe(bc);
      }),
      { numRuns: 3000 },
    );
  });

  it("sorts consistently: every pair of a sorted list is in order", () => {
    fc.assert(
      fc.property(fc.array(version, { maxLength: 25 }), (list) => {
        const sorted = [...list].sort(compareVersions);
        for (let i = 0; i < sorted.length; i++) {
          for (let j = i + 1; j < sorted.length; j++) {
            expect(compareVersions(sorted[i] ?? "", sorted[j] ?? "")).toBeLessThanOrEqual(0);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("semver helpers", () => {
  it.each([
    ["4593.2.5", "4593.2.5"],
    ["3.32.0", "3.32.0"],
    ["4.0.0-rc1", "4.0.0-rc1"],
    ["v3.32.0", "3.32.0"],
    ["4593.2", "4593.2.0"],
    ["4593", "4593.0.0"],
    ["0012.1", "12.1.0"],
  ])("reads %s as %s", (input, expected) => {
    expect(toSemver(input)?.version).toBe(expected);
  });

  it.each(["3.32.0abc", "latest", "", "1.2.3.4", "x".repeat(300), "1..2"])("refuses %j", (input) => {
    expect(toSemver(input)).toBeNull();
  });

  it("checks Flatcar and Kata versions against ranges", () => {
    const range = toRange(">=4459.0.0");
    expect(range).not.toBeNull();
    if (range === null) return;
    expect(satisfies("4593.2.5", range)).toBe(true);
    expect(satisfies("4081.3.10", range)).toBe(false);
    expect(satisfies("not-a-version", range)).toBe(false);
    const kata = toRange(">=3.21.0");
    if (kata === null) throw new Error("range");
    expect(satisfies("3.32.0", kata)).toBe(true);
    expect(satisfies("4.0.0-rc1", kata)).toBe(false); // pre-releases only when the range names one
  });

  it.each(["", "  ", "latest", ">>1", "x".repeat(300)])("toRange refuses %j", (input) => {
    expect(toRange(input)).toBeNull();
  });

  it("never throws on arbitrary input", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 300 }), (s) => {
        toSemver(s);
        toRange(s);
      }),
    );
  });
});
