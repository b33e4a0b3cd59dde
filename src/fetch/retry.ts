// Retries for network work: exponential backoff with jitter, or the server's Retry-After when it sent one.
import { type BackoffOptions, backoffDelay, type Clock, type Random } from "../clock.ts";
import type { Logger } from "../log/logger.ts";
import { FetchError } from "./http.ts";

export interface RetryPolicy {
  /** Extra attempts after the first one. */
  retries: number;
  clock: Clock;
  random: Random;
  log: Logger;
  signal?: AbortSignal;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

/** Network retries: 1 s, doubling, at most a minute. */
export const FETCH_BACKOFF: BackoffOptions = { initialMs: 1_000, maxMs: 60_000 };
/** A server asking for more than this is not waited for within one pass; the next pass tries again. */
const MAX_RETRY_AFTER_MS = 10 * 60_000;

/** How long to wait after `err` before trying again, or null when it is not worth retrying. */
export function retryDelay(err: unknown, attempt: number, policy: RetryPolicy): number | null {
  if (!(err instanceof FetchError) || !err.retryable) return null;
  if (err.retryAfterMs !== null) return err.retryAfterMs <= MAX_RETRY_AFTER_MS ? err.retryAfterMs : null;
  return backoffDelay(attempt, policy.random, {
    initialMs: policy.baseDelayMs ?? FETCH_BACKOFF.initialMs,
    maxMs: policy.maxDelayMs ?? FETCH_BACKOFF.maxMs,
  });
}

/** Runs `attempt` until it succeeds, fails for good, or retries run out; the last error is thrown. */
export async function withRetries<T>(
  what: string,
  policy: RetryPolicy,
  attempt: (n: number) => Promise<T>,
): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      const delay = n < policy.retries ? retryDelay(err, n, policy) : null;
      if (delay === null) throw err;
      policy.log.warning(`${what} failed, retrying in ${delay} ms`, {
        ERROR: err instanceof Error ? err.message : String(err),
        ATTEMPT: n + 1,
        RETRIES: policy.retries,
      });
      try {
        await policy.clock.sleep(delay, policy.signal);
      } catch (cause) {
        // Cancelled while waiting (the daemon is stopping): that is what happened, not the last failure.
        if (policy.signal?.aborted !== true) throw cause;
        throw new FetchError("aborted", what, "aborted while waiting to retry", { cause: policy.signal.reason });
      }
    }
  }
}
