// Which extended attributes a squashfs image carries, read from its xattr table without mounting or extracting
// anything. unsquashfs 4.5 lists modes but no xattrs, and extracting a security.capability needs CAP_SETFCAP,
// which the daemon's unit does not have. Format: squashfs-tools' squashfs_fs.h (superblock, xattr id table,
// metadata blocks of at most 8 KiB, each with a 2-byte header).
import { type FileHandle, open } from "node:fs/promises";
import { KataError } from "../errors.ts";

const SUPERBLOCK_BYTES = 96;
const NO_TABLE = 0xffffffffffffffffn;
const METADATA_MAX = 8192;
const UNCOMPRESSED = 0x8000;
/** squashfs_fs.h: SQUASHFS_XATTR_USER, _TRUSTED, _SECURITY; 0x100 marks a value stored out of line. */
const PREFIXES = ["user.", "trusted.", "security."];
const COMPRESSORS: Record<number, string> = { 1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd" };

/**
 * The names of every xattr in the image (e.g. "security.capability"), each once; empty when it has none.
 * `maxBytes` bounds the table read: one larger is the image's fault.
 */
export async function squashfsXattrNames(path: string, maxBytes: number): Promise<Set<string>> {
  const handle = await open(path, "r");
  try {
    const superblock = await readAt(handle, 0, SUPERBLOCK_BYTES, path);
    const compressor = superblock.readUInt16LE(20);
    const idTable = superblock.readBigUInt64LE(56);
    if (idTable === NO_TABLE) return new Set();
    const header = await readAt(handle, idTable, 24, path);
    const kvStart = header.readBigUInt64LE(0);
    const ids = header.readUInt32LE(8);
    if (ids === 0) return new Set();
    // The key/value blocks run from kvStart up to the first block of the id table, which follows them.
    const kvEnd = header.readBigUInt64LE(16);
    if (kvEnd < kvStart || kvEnd - kvStart > BigInt(maxBytes)) {
      throw imageUnreadable(path, `its xattr table spans ${kvEnd - kvStart} bytes, more than ${maxBytes}`);
    }
    const raw = await readAt(handle, kvStart, Number(kvEnd - kvStart), path);
    return namesIn(metadata(raw, compressor, path, maxBytes), path);
  } finally {
    await handle.close();
  }
}

/** The bytes of consecutive metadata blocks, each decompressed; at most `maxBytes` of them (tiny blocks that
 * each inflate to 8 KiB must not add up to gigabytes). */
function metadata(raw: Buffer, compressor: number, path: string, maxBytes: number): Buffer {
  const parts: Buffer[] = [];
  let total = 0;
  for (let at = 0; at < raw.length; ) {
    if (at + 2 > raw.length) throw imageUnreadable(path, "its xattr table ends inside a block header");
    const word = raw.readUInt16LE(at);
    const size = word & ~UNCOMPRESSED;
    const block = raw.subarray(at + 2, at + 2 + size);
    if (block.length !== size) throw imageUnreadable(path, "its xattr table ends inside a block");
    const part = word & UNCOMPRESSED ? block : decompress(block, compressor, path);
    total += part.length;
    if (total > maxBytes) throw imageUnreadable(path, `its xattr table holds more than ${maxBytes} bytes`);
    parts.push(part);
    at += 2 + size;
  }
  return Buffer.concat(parts);
}

function decompress(block: Buffer, compressor: number, path: string): Buffer {
  // node:zlib loads when an image is inspected, not with every pass that might inspect one (the boot step).
  const { inflateSync, zstdDecompressSync } = process.getBuiltinModule("node:zlib");
  const opts = { maxOutputLength: METADATA_MAX };
  try {
    if (compressor === 1) return inflateSync(block, opts);
    if (compressor === 6) return zstdDecompressSync(block, opts);
  } catch (err) {
    throw imageUnreadable(path, `a block of its xattr table does not decompress (${(err as Error).message})`);
  }
  throw new KataError(
    "inspect-failed",
    `${path} carries xattrs compressed with ${COMPRESSORS[compressor] ?? `compressor ${compressor}`}, which kata-sysextd cannot read to check for file capabilities`,
    { remedy: "republish the image with gzip or zstd compression (mksquashfs -comp zstd), or without xattrs" },
  );
}

/** Walks the entries: {u16 type, u16 name size, name, u32 value size, value}, back to back. */
function namesIn(table: Buffer, path: string): Set<string> {
  const names = new Set<string>();
  for (let at = 0; at < table.length; ) {
    if (at + 4 > table.length) throw imageUnreadable(path, "its xattr table ends inside an entry");
    const type = table.readUInt16LE(at);
    const nameSize = table.readUInt16LE(at + 2);
    const prefix = PREFIXES[type & 0xff];
    if (prefix === undefined) throw imageUnreadable(path, `its xattr table has an entry of unknown type ${type}`);
    const valueAt = at + 4 + nameSize;
    if (valueAt + 4 > table.length) throw imageUnreadable(path, "its xattr table ends inside an entry");
    names.add(prefix + table.toString("latin1", at + 4, valueAt));
    at = valueAt + 4 + table.readUInt32LE(valueAt);
  }
  return names;
}

async function readAt(handle: FileHandle, position: bigint | number, length: number, path: string): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buf, 0, length, Number(position));
  if (bytesRead !== length) throw imageUnreadable(path, "it ends before its xattr table does");
  return buf;
}

/** The image's bytes cannot be read as what they claim to be: its fault (inspect-failed, so it is quarantined). */
export const imageUnreadable = (path: string, why: string): KataError =>
  new KataError("inspect-failed", `${path} cannot be read as an image: ${why}`, {
    remedy: "the published image is corrupt or truncated at the source; it matched SHA256SUMS, so republish both",
  });
