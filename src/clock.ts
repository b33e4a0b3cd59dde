// The one clock. Tests inject a fake so timers and timestamps are deterministic.

export interface Clock {
  now(): Date;
  /** Monotonic milliseconds, for durations and rates. */
  monotonicMs(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
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
