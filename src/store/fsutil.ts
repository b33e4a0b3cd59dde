// Crash-safe file system primitives: every change is a rename of something complete, followed by an fsync of
// the directory, so a kill -9 at any point leaves either the old or the new state, never a half. The files are
// small: opened, written, renamed and closed directly, only the fsyncs wait in the thread pool (src/files.ts).
import { closeSync, fsync as fsyncCallback, linkSync, openSync, renameSync, writeFileSync } from "node:fs";
import { rename, rm, symlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** fsync(2) without holding up the event loop: it can take long when the disk is busy. */
function fsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsyncCallback(fd, (err) => (err ? reject(err) : resolve())));
}

/** Makes a directory's entries (a rename, a new or removed file) durable. */
export async function fsyncDir(path: string): Promise<void> {
  const fd = openSync(path, "r");
  try {
    await fsync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Tells apart the temp files of this process's writes that overlap in time. */
let writes = 0;

/**
 * Writes `data` to a complete, synced temp file beside `path` and hands its name to `place`, which puts it in
 * position; the temp file never stays behind, whether `place` succeeds or fails. Then the directory is synced.
 * `renames`: a `place` that succeeded took the temp name away with it, so there is nothing left to remove.
 */
async function placeTempFile(
  path: string,
  data: string | Buffer,
  mode: number,
  place: (tmp: string) => void,
  renames: boolean,
): Promise<void> {
  // Named per write, not per process: two overlapping writes of one path would otherwise share (and truncate,
  // and rename away) one temp file, and one of them fail with ENOENT.
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${++writes}.tmp`);
  let gone = false;
  try {
    const fd = openSync(tmp, "w", mode);
    try {
      writeFileSync(fd, data);
      await fsync(fd);
    } finally {
      closeSync(fd);
    }
    place(tmp);
    gone = renames;
  } finally {
    // A full disk fails the write or the sync, and link(2) leaves the temp name behind: neither may stay.
    if (!gone) await rm(tmp, { force: true });
  }
  await fsyncDir(dirname(path));
}

/** Writes `data` to `path` atomically: temp file in the same directory, fsync, rename, fsync the directory. */
export async function writeFileAtomic(path: string, data: string | Buffer, mode = 0o644): Promise<void> {
  await placeTempFile(path, data, mode, (tmp) => renameSync(tmp, path), true);
}

/**
 * Writes `data` to `path` only if nothing is there, atomically: a complete temp file, then link(2), which fails
 * with EEXIST instead of replacing. Returns false when a file was already there.
 */
export async function createFileExclusive(path: string, data: string | Buffer, mode = 0o644): Promise<boolean> {
  try {
    await placeTempFile(path, data, mode, (tmp) => linkSync(tmp, path), false);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  }
}

/** Whether `name` is a temp file of writeFileAtomic for a file named `base` (left behind only by a crash). */
export function isTempOf(name: string, base: string): boolean {
  const prefix = `.${base}.`;
  return name.startsWith(prefix) && /^\d+\.\d+\.tmp$/.test(name.slice(prefix.length));
}

/** Points the symlink `link` at `target` atomically: a new symlink beside it, renamed over the old one. */
export async function replaceSymlink(link: string, target: string): Promise<void> {
  const tmp = join(dirname(link), `.${basename(link)}.${process.pid}.new`);
  await rm(tmp, { force: true });
  await symlink(target, tmp);
  try {
    await rename(tmp, link);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dirname(link));
}

/** Removes `path` and makes the removal durable. */
export async function removeDurably(path: string): Promise<void> {
  await rm(path, { force: true });
  await fsyncDir(dirname(path));
}
