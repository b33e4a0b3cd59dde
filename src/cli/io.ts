// What a command needs from the outside world, injectable so commands run in-process in tests.
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

/** parseArgs with usage errors turned into a message and exit 2 instead of an exception. */
export class UsageError extends Error {}
