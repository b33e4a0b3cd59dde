// The Daemon over a stand-in controller, for the tests of its queue and timers alone: no host, no adapters, the
// system clock (tests fake its timers), metrics without process gauges, and what it logs kept as "level: message".
import { createMetrics } from "../../src/api/metrics.ts";
import { systemClock } from "../../src/clock.ts";
import { type Config, DEFAULTS } from "../../src/config/schema.ts";
import type { Controller } from "../../src/controller/reconciler.ts";
import { initialStatus } from "../../src/controller/snapshot.ts";
import { Daemon } from "../../src/daemon/daemon.ts";
import { createLogger } from "../../src/log/logger.ts";

export function daemonOver(
  controller: Partial<Controller>,
  config: Config = structuredClone(DEFAULTS),
): { daemon: Daemon; logged: string[] } {
  const logged: string[] = [];
  const daemon = new Daemon({
    // Only what the test drives: a call to anything else fails the test loudly.
    reconciler: controller as Controller,
    members: [],
    config,
    arch: "x86-64",
    metrics: createMetrics({ processMetrics: false }),
    clock: systemClock,
    log: createLogger((level, message) => void logged.push(`${level}: ${message}`)),
    initial: initialStatus({
      version: "0",
      startedAt: "x",
      root: "/",
      name: "kata-containers",
      arch: "x86-64",
      host: null,
    }),
  });
  return { daemon, logged };
}
