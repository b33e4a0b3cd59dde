// Errors are values: a stable code for machines (metrics, /status, tests) and a message for humans
// that says what went wrong and what to do next.
import { redactCredentials } from "./redact.ts";

export type ErrorCode =
  | "usage"
  | "config-invalid"
  | "config-unreadable"
  | "release-unreadable"
  | "release-invalid"
  | "incompatible"
  | "no-compatible-version"
  | "manifest-invalid"
  | "name-invalid"
  | "fetch-failed"
  | "fetch-timeout"
  | "fetch-too-large"
  | "fetch-http-status"
  | "digest-mismatch"
  | "signature-invalid"
  | "inspect-failed"
  | "store-failed"
  | "disk-full"
  | "activation-failed"
  | "rollback-refused"
  | "merge-not-confirmed"
  | "deferred"
  | "dbus-failed"
  | "dbus-timeout"
  | "unit-job-failed"
  | "containerd-failed"
  | "unit-not-active"
  | "preflight-failed"
  | "api-failed"
  | "subprocess-failed"
  | "subprocess-timeout"
  | "canary-failed"
  | "not-implemented"
  | "internal";

export class KataError extends Error {
  readonly code: ErrorCode;
  /** What the operator should do about it; shown next to the message in /status and the CLI. */
  readonly remedy: string | undefined;

  constructor(code: ErrorCode, message: string, options: { remedy?: string; cause?: unknown } = {}) {
    // Messages go to /status, the journal and the CLI: never with a URL's password in them.
    super(redactCredentials(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "KataError";
    this.code = code;
    this.remedy = options.remedy === undefined ? undefined : redactCredentials(options.remedy);
  }
}

/** Converts anything thrown into a KataError, keeping the original as cause. */
export function asKataError(err: unknown, fallback: ErrorCode = "internal"): KataError {
  if (err instanceof KataError) return err;
  if (err instanceof Error) {
    const errno = (err as NodeJS.ErrnoException).code;
    if (errno === "ENOSPC" || errno === "EDQUOT") {
      return new KataError("disk-full", `no space left: ${err.message}`, {
        remedy: "free space under /var/lib/kata-sysextd or enlarge the filesystem",
        cause: err,
      });
    }
    return new KataError(fallback, err.message, { cause: err });
  }
  return new KataError(fallback, String(err));
}

/** A result for pure decisions that must not throw on hostile input. */
export type Result<T, E = KataError> = { ok: true; value: T } | { ok: false; error: E };

export const ok = <T>(value: T): Result<T, never> => ({ ok: true, value });
export const fail = <E>(error: E): Result<never, E> => ({ ok: false, error });
