// The one subprocess helper: argument arrays only, never a shell string, always a timeout.
import { execFile } from "node:child_process";
import { KataError } from "./errors.ts";

export interface ExecResult {
  stdout: string;
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
}

export function run(file: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const { timeoutMs = 60_000, env, cwd, maxBufferBytes = 16 * 1024 * 1024, check = false } = options;
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: timeoutMs, env, cwd, maxBuffer: maxBufferBytes, encoding: "utf8", killSignal: "SIGKILL" },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== "number") {
          const why = error.killed ? `timed out after ${timeoutMs} ms` : error.message;
          reject(
            new KataError("subprocess-failed", `${file} ${args.join(" ")}: ${why}`, {
              remedy: `check that ${file} is installed and runnable`,
              cause: error,
            }),
          );
          return;
        }
        const exitCode = error && typeof error.code === "number" ? error.code : 0;
        if (check && exitCode !== 0) {
          reject(
            new KataError(
              "subprocess-failed",
              `${file} ${args.join(" ")} exited ${exitCode}: ${stderr.trim() || stdout.trim()}`,
            ),
          );
          return;
        }
        resolve({ stdout, stderr, exitCode });
      },
    );
  });
}
