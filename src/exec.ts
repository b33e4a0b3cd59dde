// The one subprocess helper: argument arrays only, never a shell string, always a timeout. node:child_process
// (with node:net and node:dgram behind it) loads at the first command run, not with every module that may run one:
// the boot step with nothing to do runs none.
import { KataError } from "./errors.ts";

export interface ExecResult<Stdout extends string | Buffer = string> {
  stdout: Stdout;
  stderr: string;
  exitCode: number;
}

export interface ExecOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  maxBufferBytes?: number;
  /** When false (default), a non-zero exit is returned, not thrown. */
  check?: boolean;
  /**
   * "bytes" returns stdout undecoded, for output whose encoding must be judged, not repaired (a release file
   * read out of an image). Default "text": UTF-8, invalid bytes replaced.
   */
  stdout?: "text" | "bytes";
}

export function run(
  file: string,
  args: readonly string[],
  options: ExecOptions & { stdout: "bytes" },
): Promise<ExecResult<Buffer>>;
export function run(
  file: string,
  args: readonly string[],
  options?: ExecOptions & { stdout?: "text" },
): Promise<ExecResult>;
export function run(
  file: string,
  args: readonly string[],
  options: ExecOptions = {},
): Promise<ExecResult<string | Buffer>> {
  const { timeoutMs = 60_000, env, cwd, maxBufferBytes = 16 * 1024 * 1024, check = false } = options;
  const { execFile } = process.getBuiltinModule("node:child_process");
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: timeoutMs, env, cwd, maxBuffer: maxBufferBytes, encoding: "buffer", killSignal: "SIGKILL" },
      (error, stdoutBytes, stderrBytes) => {
        if (error && typeof error.code !== "number") {
          const why = error.killed ? `timed out after ${timeoutMs} ms` : error.message;
          reject(
            new KataError(
              error.killed ? "subprocess-timeout" : "subprocess-failed",
              `${file} ${args.join(" ")}: ${why}`,
              {
                remedy: `check that ${file} is installed and runnable`,
                cause: error,
              },
            ),
          );
          return;
        }
        const stderr = stderrBytes.toString("utf8");
        const exitCode = error && typeof error.code === "number" ? error.code : 0;
        if (check && exitCode !== 0) {
          reject(
            new KataError(
              "subprocess-failed",
              `${file} ${args.join(" ")} exited ${exitCode}: ${stderr.trim() || stdoutBytes.toString("utf8").trim()}`,
            ),
          );
          return;
        }
        const stdout = options.stdout === "bytes" ? stdoutBytes : stdoutBytes.toString("utf8");
        resolve({ stdout, stderr, exitCode });
      },
    );
  });
}

/** Whether `err` is run()'s refusal of a command whose output exceeded maxBufferBytes (the command was killed). */
export function isOutputTooLarge(err: unknown): boolean {
  if (!(err instanceof KataError) || err.code !== "subprocess-failed") return false;
  const cause = err.cause as { code?: unknown } | undefined;
  return cause?.code === "ERR_CHILD_PROCESS_STDIO_MAXBUFFER";
}
