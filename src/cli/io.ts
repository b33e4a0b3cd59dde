// What a command needs from the outside world, injectable so commands run in-process in tests.
import { statSync } from "node:fs";

export interface CommandIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  isTTY: boolean;
}

// Getters: Node builds process.stdout and process.stderr on first use, a stream over a pipe or a tty each, and
// most commands (the boot step) never print to stdout.
export const processIo = (): CommandIo => ({
  get stdout() {
    return process.stdout;
  },
  get stderr() {
    return process.stderr;
  },
  get isTTY() {
    return process.stdout.isTTY === true;
  },
});

export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/**
 * Why `--root DIR` cannot be used, or null. A root that is empty (an unset shell variable) or missing is a usage
 * error: resolved as given, "" would be the working directory and a missing one would be created, state and all.
 */
export function rootProblem(root: string | undefined): string | null {
  if (root === undefined) return null;
  if (root === "") return "--root is empty: give the directory that holds the tree, or leave --root out for this host";
  try {
    return statSync(root).isDirectory() ? null : `--root ${root} is not a directory`;
  } catch {
    return `--root ${root} does not exist: give the directory that holds the tree`;
  }
}

/** parseArgs with usage errors turned into a message and exit 2 instead of an exception. */
export class UsageError extends Error {}
