// The one clock. Tests inject a fake so timers and timestamps are deterministic.

export interface Clock {
  now(): Date;
  /** Monotonic milliseconds, for durations and rates. */
  monotonicMs(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Stops a timer; stopping one that already fired or stopped does nothing. */
export type Cancel = () => void;

/**
 * Timers of a long-running process, from the same clock: they never keep the process alive on their own (a stop
 * must not wait for the next tick), and a delay beyond what the platform can hold fires at that limit instead of
 * at once.
 */
export interface Timers {
  every(ms: number, tick: () => void): Cancel;
  after(ms: number, fire: () => void): Cancel;
}

/** setTimeout's limit (2^31 - 1 ms); a longer delay would fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;

export const systemClock: Clock & Timers = {
  every: (ms, tick) => {
    const timer = setInterval(tick, Math.min(ms, MAX_TIMER_MS));
    timer.unref();
    return () => clearInterval(timer);
  },
  after: (ms, fire) => {
    const timer = setTimeout(fire, Math.min(ms, MAX_TIMER_MS));
    timer.unref();
    return () => clearTimeout(timer);
  },
  now: () => new Date(),
  monotonicMs: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    }),
};

/** Randomness is injected too, so backoff jitter is reproducible in tests. */
export type Random = () => number;
export const systemRandom: Random = Math.random;

export interface BackoffOptions {
  /** The first retry's step. */
  initialMs: number;
  maxMs: number;
}

/**
 * Delay before retry number `retry` (0 for the first): the step doubles each time up to `maxMs`, and the delay is
 * half fixed, half random within it, so clients that failed together do not retry in lockstep.
 */
export function backoffDelay(retry: number, random: Random, options: BackoffOptions): number {
  const step = Math.min(options.maxMs, options.initialMs * 2 ** Math.max(0, retry));
  return Math.round(step / 2 + random() * (step / 2));
}
