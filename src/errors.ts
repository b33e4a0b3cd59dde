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
  | "nfd-write-failed"
  | "not-implemented"
  | "internal";

/**
 * What an error says about trying again: `retryable` may succeed later without anyone acting (the network, a busy
 * bus, a full disk being cleaned); `configuration` needs the operator to change the configuration or the host;
 * `terminal` will fail the same way until the input itself changes (the published bytes, the image).
 */
export type ErrorCategory = "retryable" | "terminal" | "configuration";

/** The part of a pass an error failed, where metrics count it apart. */
export type ErrorPhase = "download" | "verification";

/** Every code's category and phase, in one table instead of rules on the code's spelling. */
const ERROR_KINDS: Record<ErrorCode, { category: ErrorCategory; phase?: ErrorPhase }> = {
  usage: { category: "configuration" },
  "config-invalid": { category: "configuration" },
  "config-unreadable": { category: "configuration" },
  "release-unreadable": { category: "configuration" },
  "release-invalid": { category: "configuration" },
  incompatible: { category: "terminal" },
  "no-compatible-version": { category: "configuration" },
  "manifest-invalid": { category: "terminal" },
  "name-invalid": { category: "terminal" },
  "fetch-failed": { category: "retryable", phase: "download" },
  "fetch-timeout": { category: "retryable", phase: "download" },
  "fetch-too-large": { category: "terminal", phase: "download" },
  "fetch-http-status": { category: "retryable", phase: "download" },
  "digest-mismatch": { category: "terminal", phase: "verification" },
  "signature-invalid": { category: "terminal", phase: "verification" },
  "inspect-failed": { category: "terminal", phase: "verification" },
  "store-failed": { category: "retryable" },
  "disk-full": { category: "retryable", phase: "download" },
  "activation-failed": { category: "terminal" },
  "rollback-refused": { category: "terminal" },
  "merge-not-confirmed": { category: "terminal" },
  deferred: { category: "retryable" },
  "dbus-failed": { category: "retryable" },
  "dbus-timeout": { category: "retryable" },
  "unit-job-failed": { category: "retryable" },
  "containerd-failed": { category: "terminal" },
  "unit-not-active": { category: "retryable" },
  "preflight-failed": { category: "terminal" },
  "api-failed": { category: "configuration" },
  "subprocess-failed": { category: "terminal" },
  "subprocess-timeout": { category: "retryable" },
  "canary-failed": { category: "terminal" },
  "nfd-write-failed": { category: "configuration" },
  "not-implemented": { category: "terminal" },
  internal: { category: "terminal" },
};

export function errorCategory(code: ErrorCode): ErrorCategory {
  return ERROR_KINDS[code].category;
}

/** The phase of a pass a code fails, or null for the rest. */
export function errorPhase(code: ErrorCode): ErrorPhase | null {
  return ERROR_KINDS[code].phase ?? null;
}

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

  /** Whether trying again can help (errorCategory), carried by the error rather than read off its message. */
  get category(): ErrorCategory {
    return errorCategory(this.code);
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
