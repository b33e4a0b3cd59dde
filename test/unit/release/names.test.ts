import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  fileNameProblem,
  formatImageFileName,
  parseImageFileName,
  validateExtensionName,
} from "../../../src/release/names.ts";

describe("parseImageFileName", () => {
  it.each([
    ["kata-containers-3.32.0-x86-64.raw", "kata-containers", undefined, { version: "3.32.0", arch: "x86-64" }],
    ["kata-containers-3.32.0-arm64.raw", "kata-containers", undefined, { version: "3.32.0", arch: "arm64" }],
    ["kata-containers-3.2.0-rc0-x86-64.raw", "kata-containers", undefined, { version: "3.2.0-rc0", arch: "x86-64" }],
    ["kata-containers-4.0.0-ppc64-le.raw", "kata-containers", undefined, { version: "4.0.0", arch: "ppc64-le" }],
    ["kata-containers-3.32.0-x86-64.raw", "kata-containers", "x86-64", { version: "3.32.0", arch: "x86-64" }],
    ["kata-3.32.0-x86.raw", "kata", undefined, { version: "3.32.0", arch: "x86" }],
  ] as const)("%s (name %s, arch %s)", (file, name, arch, expected) => {
    const r = parseImageFileName(file, name, arch);
    expect(r).toEqual({ ok: true, value: { name, ...expected } });
  });

  it.each([
    ["kata-containers-3.32.0-x86-64.raw", "kata-containers", "arm64", "does not end in -<arch>.raw"],
    ["kata-containers-3.32.0-amd64.raw", "kata-containers", undefined, "does not end in -<arch>.raw"],
    ["kata-containers-3.32.0-x86-64.img", "kata-containers", undefined, 'does not end in ".raw"'],
    ["docker-3.32.0-x86-64.raw", "kata-containers", undefined, "is not an image of"],
    ["kata-containers--x86-64.raw", "kata-containers", undefined, "has no version"],
    ["kata-containers-x86-64.raw", "kata-containers", undefined, "does not end in -<arch>.raw"],
    ["kata-containers-.1-x86-64.raw", "kata-containers", undefined, "must start with a letter or digit"],
    ["../kata-containers-3.32.0-x86-64.raw", "kata-containers", undefined, "path separator"],
    ["kata-containers-3..2-x86-64.raw", "kata-containers", undefined, 'contains ".."'],
    ["kata-containers-3.2 0-x86-64.raw", "kata-containers", undefined, "characters outside"],
  ] as const)("rejects %s", (file, name, arch, why) => {
    const r = parseImageFileName(file, name, arch);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe("name-invalid");
      expect(r.error.message).toContain(why);
    }
  });

  it("never throws, and whatever it accepts is a safe file name that formats back to itself", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "binary", maxLength: 80 }),
        fc.constantFrom("kata-containers", "k"),
        (file, name) => {
          const r = parseImageFileName(file, name);
          if (r.ok) {
            expect(fileNameProblem(file)).toBeNull();
            expect(formatImageFileName(r.value)).toEqual({ ok: true, value: file });
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("round-trips generated names", () => {
    const version = fc.stringMatching(/^[0-9][0-9a-z.+~^-]{0,15}$/).filter((v) => !v.includes(".."));
    const arch = fc.constantFrom("x86-64", "arm64", "ppc64-le", "s390x");
    fc.assert(
      fc.property(version, arch, (v, a) => {
        const file = formatImageFileName({ name: "kata-containers", version: v, arch: a });
        if (!file.ok) return; // e.g. a version ending in "-arm" would be ambiguous: refused, not misread
        expect(parseImageFileName(file.value, "kata-containers", a)).toEqual({
          ok: true,
          value: { name: "kata-containers", version: v, arch: a },
        });
      }),
    );
  });
});

describe("file and extension names", () => {
  it.each(["", ".", "..", "a/b", "a\\b", "a..b", ".hidden", "-rf", "a b", "a\nb", "ä", "x".repeat(256), "a:b"])(
    "refuses %j",
    (name) => {
      expect(fileNameProblem(name)).not.toBeNull();
    },
  );

  it.each(["kata-containers", "kata_containers.v2", "a+b~c^d", "x".repeat(255)])("accepts %j", (name) => {
    expect(fileNameProblem(name)).toBeNull();
  });

  it("refuses an extension name ending in .raw", () => {
    expect(validateExtensionName("kata.raw").ok).toBe(false);
    expect(validateExtensionName("kata-containers").ok).toBe(true);
  });
});
