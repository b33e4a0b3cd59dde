import { describe, expect, it } from "vitest";
import type { Clock } from "../../../src/clock.ts";
import { createLogger } from "../../../src/log/logger.ts";
import {
  createNotifier,
  type NotifyRun,
  startWatchdog,
  statusLine,
  watchdogIntervalMs,
} from "../../../src/systemd/notify.ts";

const quiet = createLogger(() => undefined);

describe("watchdogIntervalMs", () => {
  it.each([
    [{}, undefined],
    [{ WATCHDOG_USEC: "30000000" }, 15_000],
    [{ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "42" }, 15_000],
    [{ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "43" }, undefined],
    [{ WATCHDOG_USEC: "0" }, undefined],
    [{ WATCHDOG_USEC: "soon" }, undefined],
    [{ WATCHDOG_USEC: "1000" }, 1],
  ])("%j -> %s", (env, expected) => {
    expect(watchdogIntervalMs(env, 42)).toBe(expected);
  });
});

describe("statusLine", () => {
  it("keeps STATUS= on one line", () => {
    expect(statusLine("fetching\nkata 3.32.0\r\n")).toBe("STATUS=fetching kata 3.32.0");
  });
});

describe("createNotifier", () => {
  it("does nothing at all when NOTIFY_SOCKET is unset", async () => {
    const spawned: string[][] = [];
    const run: NotifyRun = async (file, args) => {
      spawned.push([file, ...args]);
      return { exitCode: 0, stderr: "" };
    };
    const notifier = createNotifier({ log: quiet, env: {}, run });
    expect(notifier.enabled).toBe(false);
    await notifier.ready("up");
    await notifier.status("x");
    await notifier.watchdog();
    await notifier.stopping();
    expect(spawned).toEqual([]);
  });

  it("runs systemd-notify with our PID, one at a time, and logs instead of throwing on failure", async () => {
    const spawned: string[][] = [];
    const logged: string[] = [];
    let running = 0;
    const run: NotifyRun = async (file, args) => {
      running++;
      expect(running).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, 5));
      running--;
      spawned.push([file, ...args]);
      if (args.includes("WATCHDOG=1")) throw new Error("spawn ENOENT");
      return { exitCode: args.includes("STOPPING=1") ? 1 : 0, stderr: "no socket" };
    };
    const notifier = createNotifier({
      log: createLogger((level, message) => logged.push(`${level}: ${message}`)),
      env: { NOTIFY_SOCKET: "/run/systemd/notify" },
      pid: 42,
      run,
    });
    await Promise.all([notifier.ready("up"), notifier.watchdog(), notifier.stopping()]);
    expect(spawned).toEqual([
      ["systemd-notify", "--pid=42", "READY=1", "STATUS=up"],
      ["systemd-notify", "--pid=42", "WATCHDOG=1"],
      ["systemd-notify", "--pid=42", "STOPPING=1"],
    ]);
    expect(logged).toHaveLength(2);
    expect(logged[0]).toContain("spawn ENOENT");
    expect(logged[1]).toContain("exited 1: no socket");
  });
});

describe("startWatchdog", () => {
  it("pings at the interval until stopped", async () => {
    const sleeps: number[] = [];
    let stop: () => void = () => undefined;
    const clock: Clock = {
      now: () => new Date(0),
      monotonicMs: () => 0,
      sleep: async (ms) => {
        sleeps.push(ms);
        if (sleeps.length === 3) stop();
      },
    };
    let pings = 0;
    const run: NotifyRun = async () => {
      pings++;
      return { exitCode: 0, stderr: "" };
    };
    const notifier = createNotifier({ log: quiet, env: { NOTIFY_SOCKET: "/x" }, run });
    stop = startWatchdog(notifier, clock, 15_000);
    for (let i = 0; i < 50 && sleeps.length < 3; i++) await new Promise((resolve) => setTimeout(resolve, 1));
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(sleeps).toEqual([15_000, 15_000, 15_000]);
    expect(pings).toBe(3);
  });

  it("is off without an interval", () => {
    const notifier = createNotifier({
      log: quiet,
      env: { NOTIFY_SOCKET: "/x" },
      run: async () => ({ exitCode: 0, stderr: "" }),
    });
    const clock: Clock = { now: () => new Date(0), monotonicMs: () => 0, sleep: async () => undefined };
    expect(startWatchdog(notifier, clock, undefined)).toBeTypeOf("function");
  });
});
