// While an activation waits for Kata sandboxes, the daemon looks for them every few seconds: /status counts them
// as they end, not only at the pass that deferred, and the pass after the last one ends clears `waiting`.
import { afterEach, expect, it, vi } from "vitest";
import type { PassOutcome } from "../../../src/controller/reconciler.ts";
import { KataError } from "../../../src/errors.ts";
import { daemonOver } from "../../helpers/daemon.ts";

afterEach(() => vi.useRealTimers());

const WAITING = {
  members: [{ name: "kata-containers", version: "3.32.0", file: "kata-containers-3.32.0-x86-64.raw" }],
  sandboxes: 3,
  since: "2026-12-02T10:00:00.000Z",
  rebootAt: "2026-12-03T10:00:00.000Z",
};

it("counts the sandboxes waited for as they end, and a pass that activates ends the wait", async () => {
  vi.useFakeTimers();
  const running = [3, 2, 2, 0];
  let passes = 0;
  const deferred: PassOutcome = {
    result: "deferred",
    error: new KataError("deferred", "Kata 3.32.0 waits: 3 Kata sandboxes running"),
    observed: null,
    unconfirmed: null,
    waitFor: "sandboxes",
    waiting: WAITING,
  };
  const ok: PassOutcome = { result: "ok", error: null, observed: null, unconfirmed: null };
  const reconciler = {
    run: async () => (++passes === 1 ? deferred : ok),
    sandboxesRunning: async () => running.shift() ?? 0,
  };
  const { daemon } = daemonOver(reconciler);
  const first = await daemon.refresh();
  expect(first.message).toContain("; Kata 3.32.0 waits: 3 Kata sandboxes running");
  expect(daemon.snapshot().waiting).toEqual(WAITING);
  await vi.advanceTimersByTimeAsync(5_000); // 3 still run
  expect(daemon.snapshot().waiting?.sandboxes).toBe(3);
  await vi.advanceTimersByTimeAsync(5_000); // one ended
  expect(daemon.snapshot().waiting).toEqual({ ...WAITING, sandboxes: 2 });
  await vi.advanceTimersByTimeAsync(10_000); // the last ended: the pass that activates
  expect(passes).toBe(2);
  expect(daemon.snapshot().waiting).toBeNull();
  vi.useRealTimers();
  await daemon.stop();
});
