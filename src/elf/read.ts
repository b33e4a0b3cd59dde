// A small ELF64 reader: just what deciding "can this binary run here" needs — the interpreter, the dynamic
// section (DT_NEEDED, DT_RUNPATH/DT_RPATH, DT_SONAME) and symbol versions (DT_VERNEED needs, DT_VERDEF
// definitions). It reads only the byte ranges it needs, so a 100 MB binary costs a few small reads.
import { constants } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";

export interface VersionNeed {
  /** The library the versions are needed from (vn_file), e.g. "libc.so.6". */
  file: string;
  /** Version names, e.g. ["GLIBC_2.2.5", "GLIBC_2.34"]. */
  versions: string[];
}

export interface ElfInfo {
  class: 64;
  /** e_machine: 62 = x86-64, 183 = aarch64. */
  machine: number;
  /** e_type: 2 = executable, 3 = shared object / PIE. */
  type: number;
  interpreter: string | null;
  /** True when the file has a PT_DYNAMIC segment (it is linked dynamically, or is a shared library). */
  dynamic: boolean;
  soname: string | null;
  needed: string[];
  rpath: string[];
  runpath: string[];
  versionNeeds: VersionNeed[];
  /** Version names this object defines (DT_VERDEF), e.g. libc's GLIBC_2.2.5 … GLIBC_2.36. */
  versionDefs: string[];
}

/** `foreign`: an ELF object this reader (and a 64-bit little-endian host's loader) cannot use: 32-bit, big-endian. */
export type ElfRead = { elf: true; info: ElfInfo } | { elf: false; reason: string; foreign?: true };

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_STRSZ = 10n;
const DT_SONAME = 14n;
const DT_RPATH = 15n;
const DT_RUNPATH = 29n;
const DT_VERDEF = 0x6ffffffcn;
const DT_VERDEFNUM = 0x6ffffffdn;
const DT_VERNEED = 0x6ffffffen;
const DT_VERNEEDNUM = 0x6fffffffn;
/** Upper bounds against hostile files: no real object has more. */
const MAX_PHNUM = 4096;
const MAX_VERSION_ENTRIES = 4096;

interface Segment {
  type: number;
  offset: number;
  vaddr: bigint;
  filesz: number;
}

class Reader {
  private readonly fh: FileHandle;
  readonly size: number;

  constructor(fh: FileHandle, size: number) {
    this.fh = fh;
    this.size = size;
  }

  async bytes(offset: number, length: number): Promise<Buffer> {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`range ${offset}+${length} outside the file (${this.size} bytes)`);
    }
    const buf = Buffer.alloc(length);
    const { bytesRead } = await this.fh.read(buf, 0, length, offset);
    if (bytesRead !== length) throw new RangeError(`short read at ${offset}`);
    return buf;
  }
}

/** Parses the ELF file at `path`. Not-ELF (scripts, data) is a normal answer, not an error. */
export async function readElf(path: string): Promise<ElfRead> {
  // O_NONBLOCK: opening a FIFO (or a device) for reading must not wait for a writer; it is no ELF file anyway.
  const fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (!st.isFile()) return { elf: false, reason: "not a regular file" };
    const { size } = st;
    if (size < 64) return { elf: false, reason: "too short for an ELF header" };
    const r = new Reader(fh, size);
    const ident = await r.bytes(0, 64);
    if (ident.readUInt32BE(0) !== 0x7f454c46) return { elf: false, reason: "no ELF magic" };
    if (ident[4] !== 2) return { elf: false, reason: "a 32-bit ELF object", foreign: true };
    if (ident[5] !== 1) return { elf: false, reason: "a big-endian ELF object", foreign: true };
    return { elf: true, info: await parse(r, ident) };
  } catch (err) {
    if (err instanceof RangeError) return { elf: false, reason: `malformed ELF: ${err.message}` };
    throw err;
  } finally {
    await fh.close();
  }
}

async function parse(r: Reader, h: Buffer): Promise<ElfInfo> {
  const type = h.readUInt16LE(16);
  const machine = h.readUInt16LE(18);
  const phoff = Number(h.readBigUInt64LE(32));
  const phentsize = h.readUInt16LE(54);
  const phnum = h.readUInt16LE(56);
  if (phnum > MAX_PHNUM || (phnum > 0 && phentsize < 56)) throw new RangeError("bad program header table");

  const table = phnum > 0 ? await r.bytes(phoff, phnum * phentsize) : Buffer.alloc(0);
  const segments: Segment[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = i * phentsize;
    segments.push({
      type: table.readUInt32LE(at),
      offset: Number(table.readBigUInt64LE(at + 8)),
      vaddr: table.readBigUInt64LE(at + 16),
      filesz: Number(table.readBigUInt64LE(at + 32)),
    });
  }

  const info: ElfInfo = {
    class: 64,
    machine,
    type,
    interpreter: null,
    dynamic: false,
    soname: null,
    needed: [],
    rpath: [],
    runpath: [],
    versionNeeds: [],
    versionDefs: [],
  };

  const interp = segments.find((s) => s.type === PT_INTERP);
  if (interp !== undefined) info.interpreter = cString(await r.bytes(interp.offset, interp.filesz), 0);

  const dyn = segments.find((s) => s.type === PT_DYNAMIC);
  if (dyn === undefined) return info;
  info.dynamic = true;

  const entries = await r.bytes(dyn.offset, dyn.filesz - (dyn.filesz % 16));
  const tags: Array<[bigint, bigint]> = [];
  for (let at = 0; at + 16 <= entries.length; at += 16) {
    const tag = entries.readBigInt64LE(at);
    if (tag === DT_NULL) break;
    tags.push([tag, entries.readBigUInt64LE(at + 8)]);
  }
  const first = (tag: bigint): bigint | undefined => tags.find(([t]) => t === tag)?.[1];

  // Dynamic entries hold virtual addresses; PT_LOAD segments map them back to file offsets.
  const loads = segments.filter((s) => s.type === PT_LOAD);
  const fileOffset = (vaddr: bigint): number => {
    const seg = loads.find((s) => vaddr >= s.vaddr && vaddr < s.vaddr + BigInt(s.filesz));
    if (seg === undefined) throw new RangeError(`address 0x${vaddr.toString(16)} is in no loaded segment`);
    return seg.offset + Number(vaddr - seg.vaddr);
  };

  const strtabAddr = first(DT_STRTAB);
  const strsz = first(DT_STRSZ);
  if (strtabAddr === undefined || strsz === undefined) return info;
  const strtab = await r.bytes(fileOffset(strtabAddr), Number(strsz));
  const str = (offset: bigint | number): string => cString(strtab, Number(offset));

  for (const [tag, value] of tags) {
    if (tag === DT_NEEDED) info.needed.push(str(value));
    else if (tag === DT_SONAME) info.soname = str(value);
    else if (tag === DT_RPATH) info.rpath.push(...splitPath(str(value)));
    else if (tag === DT_RUNPATH) info.runpath.push(...splitPath(str(value)));
  }

  const verneed = first(DT_VERNEED);
  const verneednum = Number(first(DT_VERNEEDNUM) ?? 0n);
  if (verneed !== undefined) info.versionNeeds = await readVerneed(r, fileOffset(verneed), verneednum, str);

  const verdef = first(DT_VERDEF);
  const verdefnum = Number(first(DT_VERDEFNUM) ?? 0n);
  if (verdef !== undefined) info.versionDefs = await readVerdef(r, fileOffset(verdef), verdefnum, str);
  return info;
}

/** Elf64_Verneed (16 bytes) chains, each with Elf64_Vernaux (16 bytes) entries naming the needed versions. */
async function readVerneed(
  r: Reader,
  start: number,
  count: number,
  str: (o: number) => string,
): Promise<VersionNeed[]> {
  const needs: VersionNeed[] = [];
  let at = start;
  // One budget for every Vernaux of the table: per-level caps alone multiply (4096 needs all pointing at one
  // 4096-entry chain made a 131 KB file take minutes).
  let budget = MAX_VERSION_ENTRIES;
  for (let i = 0; i < Math.min(count, MAX_VERSION_ENTRIES) && budget > 0; i++) {
    const vn = await r.bytes(at, 16);
    const cnt = vn.readUInt16LE(2);
    const need: VersionNeed = { file: str(vn.readUInt32LE(4)), versions: [] };
    let aux = at + vn.readUInt32LE(8);
    for (let j = 0; j < cnt && budget > 0; j++) {
      const vna = await r.bytes(aux, 16);
      need.versions.push(str(vna.readUInt32LE(8)));
      budget -= 1;
      const next = vna.readUInt32LE(12);
      if (next === 0) break;
      aux += next;
    }
    needs.push(need);
    const next = vn.readUInt32LE(12);
    if (next === 0) break;
    at += next;
  }
  return needs;
}

/** Elf64_Verdef (20 bytes) chains; the first Elf64_Verdaux of each names the defined version. */
async function readVerdef(r: Reader, start: number, count: number, str: (o: number) => string): Promise<string[]> {
  const defs: string[] = [];
  let at = start;
  for (let i = 0; i < Math.min(count, MAX_VERSION_ENTRIES); i++) {
    const vd = await r.bytes(at, 20);
    const flags = vd.readUInt16LE(2);
    const VER_FLG_BASE = 1; // the entry naming the object itself (its soname), not a version
    if ((flags & VER_FLG_BASE) === 0 && vd.readUInt16LE(6) > 0) {
      const aux = await r.bytes(at + vd.readUInt32LE(12), 8);
      defs.push(str(aux.readUInt32LE(0)));
    }
    const next = vd.readUInt32LE(16);
    if (next === 0) break;
    at += next;
  }
  return defs;
}

function cString(buf: Buffer, offset: number): string {
  if (offset < 0 || offset >= buf.length) throw new RangeError(`string offset ${offset} outside the string table`);
  const end = buf.indexOf(0, offset);
  return buf.toString("utf8", offset, end === -1 ? buf.length : end);
}

function splitPath(value: string): string[] {
  return value.split(":").filter((p) => p !== "");
}
