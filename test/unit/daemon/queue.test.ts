// The daemon's one-at-a-time queue with a reconciler that stands in for a slow or failing pass: timer ticks do
// not pile up behind a slow pass, and work nobody awaits neither vanishes silently nor crashes the process.
import { afterEach, expect, it, vi } from "vitest";
import { DEFAULTS } from "../../../src/config/schema.ts";
import type { PassOutcome } from "../../../src/controller/reconciler.ts";
import { daemonOver } from "../../helpers/daemon.ts";

afterEach(() => vi.useRealTimers());

const FAILED: PassOutcome = { result: "failed", error: null, observed: null, unconfirmed: null };

function daemonWith(reconcile: () => Promise<PassOutcome>) {
  const config = structuredClone(DEFAULTS);
  config.daemon.intervalSeconds = 60;
  return daemonOver({ run: reconcile }, config);
}

it("runs at most one timer pass behind a pass slower than the interval", async () => {
  vi.useFakeTimers();
  let passes = 0;
  let releaseFirst: () => void = () => undefined;
  const { daemon } = daemonWith(() => {
    passes += 1;
    return passes === 1 ? new Promise((resolve) => (releaseFirst = () => resolve(FAILED))) : Promise.resolve(FAILED);
  });
  const first = daemon.refresh(); // the pass at start: hangs for two hours (a mirror that is down, retried)
  daemon.startTimer();
  await vi.advanceTimersByTimeAsync(2 * 3600 * 1000); // 120 ticks
  releaseFirst();
  await first;
  vi.useRealTimers();
  await daemon.stop(); // what SIGTERM waits for
  expect(passes).toBe(2);
});

it("a refresh that throws fails its caller; the work queued after it is not left unhandled", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    // As a refresh that cannot write state.json (a full /var) throws before its pass ends.
    const { daemon, logged } = daemonWith(() => Promise.reject(new Error("ENOSPC: no space left on device")));
    await expect(daemon.refresh()).rejects.toThrow("ENOSPC");
    await daemon.stop();
    await new Promise((resolve) => setTimeout(resolve, 50)); // unhandled rejections are reported on a later tick
    expect(unhandled).toEqual([]);
    expect(logged).toContain("error: queued work failed: ENOSPC: no space left on device");
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});
