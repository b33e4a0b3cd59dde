// What a command needs from the outside world, injectable so commands run in-process in tests.
export interface CommandIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  isTTY: boolean;
}

export const processIo = (): CommandIo => ({
  stdout: process.stdout,
  stderr: process.stderr,
  isTTY: process.stdout.isTTY === true,
});

export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** parseArgs with usage errors turned into a message and exit 2 instead of an exception. */
export class UsageError extends Error {}
