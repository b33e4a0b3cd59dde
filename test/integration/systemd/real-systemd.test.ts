// The same adapters against the real thing: systemd as PID 1 in systemd-nspawn, its real system bus, real unit
// jobs, real Type=notify handling, and the fake update_engine run standalone on that bus. This is what keeps the
// fakes honest: every behaviour the fast tests assume of systemd is checked here once.
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { skipWithout } from "../../helpers/needs.ts";
import { allowBusName, bootContainer, type Container, nspawnUnavailableReason } from "../../helpers/nspawn.ts";

const skip = skipWithout(nspawnUnavailableReason(), "the real-systemd adapter test");

const REPO = resolve(import.meta.dirname, "../../..");

// Runs inside the container with the repo's own node; prints one JSON line per step.
const PROBE = `
import { systemClock } from "${REPO}/src/clock.ts";
import { createLogger } from "${REPO}/src/log/logger.ts";
import { createBus } from "${REPO}/src/systemd/bus.ts";
import { createSystemdManager } from "${REPO}/src/systemd/manager.ts";

const log = createLogger(() => undefined);
const bus = createBus({ clock: systemClock, random: Math.random, log, defaultTimeoutMs: 10_000 });
const out = (step, value) => console.log(JSON.stringify({ step, value }));
const outcome = (p) => p.then(() => "done", (e) => ({ code: e.code, result: e.result ?? null }));
try {
  const m = await createSystemdManager(bus, log, systemClock, { jobTimeoutMs: 30_000, confirmIntervalMs: 100 });
  await m.reload();
  await m.startUnit("probe-ok.service");
  out("start", await m.unitState("probe-ok.service"));
  await m.restartUnit("probe-ok.service");
  out("confirm", await m.confirmActive("probe-ok.service"));
  await m.stopUnit("probe-ok.service");
  out("stop", await m.unitState("probe-ok.service"));
  out("failed", await outcome(m.startUnit("probe-fail.service")));
  out("dependency", await outcome(m.startUnit("probe-dep.service")));
  out("notfound", await outcome(m.startUnit("probe-nonexistent.service")));
  out("unloaded", await m.unitState("probe-nonexistent.service"));
  await m.startUnit("probe-notify.service");
  out("notify", await m.confirmActive("probe-notify.service"));
  m.close();
} finally {
  await bus.close();
}
`;

// A Type=notify service that signals readiness and pings its watchdog through src/systemd/notify.ts.
const NOTIFY_SERVICE = `
import { systemClock } from "${REPO}/src/clock.ts";
import { createLogger, stderrSink } from "${REPO}/src/log/logger.ts";
import { createNotifier, startWatchdog, watchdogIntervalMs } from "${REPO}/src/systemd/notify.ts";
const notifier = createNotifier({ log: createLogger(stderrSink()) });
await new Promise((r) => setTimeout(r, 300)); // readiness must really be waited for
await notifier.ready("probe ready");
const stop = startWatchdog(notifier, systemClock, watchdogIntervalMs());
process.once("SIGTERM", async () => { stop(); await notifier.stopping(); process.exit(0); });
setInterval(() => undefined, 1 << 30);
`;

const UPDATE_WATCH = `
import { systemClock } from "${REPO}/src/clock.ts";
import { createLogger } from "${REPO}/src/log/logger.ts";
import { createBus } from "${REPO}/src/systemd/bus.ts";
import { watchUpdateEngine } from "${REPO}/src/systemd/update-engine.ts";
import { writeFileSync } from "node:fs";
const bus = createBus({ clock: systemClock, random: Math.random, log: createLogger(() => undefined) });
const watch = watchUpdateEngine(bus, createLogger(() => undefined), (s) => {
  if (s.operation !== "UPDATE_STATUS_UPDATED_NEED_REBOOT") return;
  console.log(JSON.stringify(s));
  watch.stop();
  void bus.close();
});
await watch.ready;
console.log(JSON.stringify({ absentAtStart: watch.absent() }));
writeFileSync("/run/kata-probe/watching", "");
`;

// Restarts the real dbus-daemon under a connected manager: our client reconnects, systemd comes back to the bus,
// the adapter subscribes again, and a job is tracked to its end on the new bus.
const BUS_RESTART = `
import { execFileSync } from "node:child_process";
import { systemClock } from "${REPO}/src/clock.ts";
import { createLogger } from "${REPO}/src/log/logger.ts";
import { createBus } from "${REPO}/src/systemd/bus.ts";
import { createSystemdManager } from "${REPO}/src/systemd/manager.ts";

const log = createLogger(() => undefined);
const bus = createBus({ clock: systemClock, random: Math.random, log, defaultTimeoutMs: 10_000 });
const m = await createSystemdManager(bus, log, systemClock, { jobTimeoutMs: 30_000 });
const reconnected = new Promise((r) => bus.on("reconnected", r));
execFileSync("systemctl", ["restart", "dbus.service"]);
await reconnected;
for (let i = 0; i < 100 && !(await bus.nameHasOwner("org.freedesktop.systemd1").catch(() => false)); i++) {
  await new Promise((r) => setTimeout(r, 100));
}
await m.restartUnit("probe-ok.service");
const state = await m.confirmActive("probe-ok.service");
console.log(JSON.stringify({ reconnected: true, state }));
m.close();
await bus.close();
`;

const unit = (body: string): string => `[Service]\n${body}\n`;

describe.skipIf(skip)("systemd adapters under real systemd (nspawn)", () => {
  let c: Container;

  beforeAll(async () => {
    c = await bootContainer({
      binds: [{ host: REPO, container: REPO, readOnly: true }],
      etcFiles: {
        "systemd/system/probe-ok.service": unit("ExecStart=/usr/bin/sleep 300"),
        "systemd/system/probe-fail.service": unit("Type=oneshot\nExecStart=/usr/bin/false"),
        "systemd/system/probe-dep.service": `[Unit]\nRequires=probe-fail.service\nAfter=probe-fail.service\n${unit(
          "ExecStart=/usr/bin/sleep 300",
        )}`,
        // The control: ready, but never pings its watchdog.
        "systemd/system/probe-silent.service": unit(
          "Type=notify\nNotifyAccess=all\nWatchdogSec=2\nExecStart=/bin/sh -c 'systemd-notify --ready; exec sleep 300'",
        ),
        "systemd/system/probe-notify.service": unit(
          `Type=notify\nNotifyAccess=all\nWatchdogSec=2\nExecStart=${process.execPath} /run/kata-probe/notify-service.ts`,
        ),
      },
    });
    await c.writeFile("/run/kata-probe/probe.ts", PROBE);
    await c.writeFile("/run/kata-probe/notify-service.ts", NOTIFY_SERVICE);
    await c.writeFile("/run/kata-probe/update-watch.ts", UPDATE_WATCH);
    await c.writeFile("/run/kata-probe/bus-restart.ts", BUS_RESTART);
  }, 240_000);

  afterAll(async () => {
    await c?.dispose();
  });

  it("tracks real jobs to their JobRemoved results, reads unit state and runs a Type=notify service", async () => {
    const stdout = await c.check([process.execPath, "/run/kata-probe/probe.ts"], { timeoutMs: 90_000 });
    const steps = Object.fromEntries(
      stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as { step: string; value: unknown })
        .map(({ step, value }) => [step, value]),
    );
    expect(steps).toEqual({
      start: { activeState: "active", subState: "running" },
      confirm: { activeState: "active", subState: "running" },
      stop: { activeState: "inactive", subState: "dead" },
      failed: { code: "unit-job-failed", result: "failed" },
      dependency: { code: "unit-job-failed", result: "dependency" },
      // systemd refuses to queue a job for a unit without a unit file: a D-Bus error, no job at all.
      notfound: { code: "dbus-failed", result: null },
      unloaded: { activeState: "inactive", subState: "dead" },
      notify: { activeState: "active", subState: "running" },
    });
    expect(await c.check(["systemctl", "show", "-P", "StatusText", "probe-notify.service"])).toBe("probe ready\n");
  }, 120_000);

  it("keeps a watchdog-supervised service alive with WATCHDOG=1 pings and stops it with STOPPING=1", async () => {
    // WatchdogSec=2: after 3 s the silent control has been killed by systemd, ours is still active.
    await c.check(["systemctl", "start", "probe-silent.service"]);
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await c.check(["systemctl", "show", "-P", "Result", "probe-silent.service"])).toBe("watchdog\n");
    expect(await c.check(["systemctl", "show", "-P", "ActiveState", "probe-notify.service"])).toBe("active\n");
    expect(await c.check(["systemctl", "show", "-P", "WatchdogTimestampMonotonic", "probe-notify.service"])).not.toBe(
      "0\n",
    );
    await c.check(["systemctl", "stop", "probe-notify.service"]);
    expect(await c.check(["systemctl", "show", "-P", "Result", "probe-notify.service"])).toBe("success\n");
  }, 60_000);

  it("follows the standalone fake update_engine on the real system bus, after reporting it absent", async () => {
    await allowBusName(c, "com.coreos.update1");
    const watcher = c.check([process.execPath, "/run/kata-probe/update-watch.ts"], { timeoutMs: 60_000 });
    // update_engine appears only once the watcher has settled its first probe.
    for (let i = 0; i < 100 && (await c.exec(["test", "-e", "/run/kata-probe/watching"])).exitCode !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await c.check([
      "systemd-run",
      "--quiet",
      "--unit=fake-update-engine.service",
      process.execPath,
      `${REPO}/test/helpers/fake-update-engine.ts`,
      "--emit",
      "UPDATE_STATUS_DOWNLOADING",
      "--emit",
      "UPDATE_STATUS_UPDATED_NEED_REBOOT",
      "--version",
      "4650.0.0",
    ]);
    const lines = (await watcher).trim().split("\n");
    expect(JSON.parse(lines[0] ?? "")).toEqual({ absentAtStart: true });
    expect(JSON.parse(lines[1] ?? "")).toMatchObject({
      operation: "UPDATE_STATUS_UPDATED_NEED_REBOOT",
      newVersion: "4650.0.0",
      progress: 1,
    });
  }, 90_000);

  // Last: it restarts the container's dbus-daemon.
  it("survives a restart of the real dbus-daemon and tracks a job on the new bus", async () => {
    const stdout = await c.check([process.execPath, "/run/kata-probe/bus-restart.ts"], { timeoutMs: 60_000 });
    expect(JSON.parse(stdout.trim())).toEqual({
      reconnected: true,
      state: { activeState: "active", subState: "running" },
    });
  }, 90_000);
});
