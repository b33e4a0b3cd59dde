// Small file-system questions every module asks. Writes that must survive a crash live in src/store/fsutil.ts.
//
// Reads of a few KiB, folder listings and lookups of our own local files call the system directly (the *Sync
// functions): each fs/promises call is a round trip through libuv's thread pool, about 0.1 ms on these machines
// and more than such a call takes, and a pass made some eighty of them before containerd could start. What may
// block for long goes through the pool: fsync, image-sized reads and writes, and paths we do not own (a FIFO
// there would block an open): those are read with readSmallFile, whose open cannot block.
import { closeSync, constants, fstatSync, openSync, readdirSync, readSync } from "node:fs";
import { access } from "node:fs/promises";

/** A folder's names; none when it cannot be read (missing, not a folder). */
export function listing(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Whether `path` exists (following symlinks); any error reads as "no". */
export function pathExists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

export type SmallFile =
  | { kind: "ok"; text: string }
  | { kind: "missing" }
  /** A FIFO, a device, a directory, a socket: reading it could hang or never end. */
  | { kind: "not-regular"; what: string }
  | { kind: "too-large"; maxBytes: number }
  | { kind: "unreadable"; message: string; code?: string };

/**
 * Reads a small text file the daemon is told to trust (configuration, state) without letting it hang or fill
 * memory: only a regular file (opened non-blocking, so a FIFO cannot block the open), at most `maxBytes`.
 * Synchronously: the few KiB of a local file the kernel has cached, where a round trip through the thread pool
 * for each of open, fstat, read and close cost more than the calls (state.json is read three times a pass).
 */
export async function readSmallFile(path: string, maxBytes: number): Promise<SmallFile> {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // A dangling symlink is missing too: what it names is not there.
    if (code === "ENOENT") return { kind: "missing" };
    return { kind: "unreadable", message: (err as Error).message, ...(code === undefined ? {} : { code }) };
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { kind: "not-regular", what: fileKind(st) };
    if (st.size > maxBytes) return { kind: "too-large", maxBytes };
    // The size may change while it is read: read until the end or one byte past the cap, and judge what came.
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.alloc(Math.min(64 * 1024, maxBytes + 1 - length));
      const bytesRead = readSync(fd, chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      length += bytesRead;
      if (length > maxBytes) return { kind: "too-large", maxBytes };
    }
    return { kind: "ok", text: Buffer.concat(chunks).toString("utf8") };
  } catch (err) {
    return { kind: "unreadable", message: (err as Error).message };
  } finally {
    closeSync(fd);
  }
}

function fileKind(st: {
  isDirectory(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
}): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  return "not a regular file";
}
