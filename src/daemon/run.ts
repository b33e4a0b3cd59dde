// kata-sysextd as a service: wires the reconciler, the API, systemd (D-Bus, sd_notify, watchdog),
// update_engine, file watches and signals together. Behaviour lives in daemon.ts and the modules it calls.

import { createMetrics } from "../api/metrics.ts";
import { startApi } from "../api/server.ts";
import { systemClock, systemRandom } from "../clock.ts";
import { loadConfig } from "../config/load.ts";
import { buildReconcilerDeps, type CommandContext, withHostFields } from "../controller/commands.ts";
import { Reconciler } from "../controller/reconciler.ts";
import { initialStatus } from "../controller/snapshot.ts";
import { asKataError } from "../errors.ts";
import type { StatusDocument } from "../status.ts";
import { createNotifier, startWatchdog, watchdogIntervalMs } from "../systemd/notify.ts";
import { watchUpdateEngine } from "../systemd/update-engine.ts";
import { DAEMON_VERSION } from "../version.ts";
import { type Configured, Daemon } from "./daemon.ts";
import { connectSystemd } from "./systemd.ts";
import { watchFiles } from "./watch.ts";

export async function runDaemon(given: CommandContext): Promise<number> {
  const ctx = await withHostFields(given);
  const { log, paths } = ctx;
  const notifier = createNotifier({ log });
  const systemd = await connectSystemd({
    clock: systemClock,
    random: systemRandom,
    log,
    manageUnits: paths.root === "/",
  });
  const metrics = createMetrics();
  let daemon: Daemon | null = null;

  const configure = (config: CommandContext["config"]): Configured & ReturnType<typeof buildReconcilerDeps> => {
    const deps = buildReconcilerDeps({ ...ctx, config, systemd: systemd?.manager ?? null });
    return { ...deps, reconciler: new Reconciler({ ...deps, onProgress: (e) => daemon?.onEvent(e) }) };
  };
  const first = configure(ctx.config);
  let lastState: StatusDocument["state"] | null = null;
  daemon = new Daemon({
    ...first,
    stateFile: paths.stateFile,
    metrics,
    initial: initialStatus({
      version: DAEMON_VERSION,
      startedAt: first.clock.now().toISOString(),
      root: paths.root,
      name: ctx.config.source.name,
      arch: first.arch,
    }),
    onStatus: (doc) => {
      if (doc.state === lastState) return;
      lastState = doc.state;
      void notifier.status(
        `${doc.state}; kata ${doc.extension.active ?? "none"}${doc.extension.merged ? " merged" : ""}`,
      );
    },
  });
  const running = daemon;

  let api: Awaited<ReturnType<typeof startApi>>;
  try {
    api = await startApi({
      listen: ctx.config.api.enabled ? ctx.config.api.listen : null,
      socketPath: paths.apiSocket,
      snapshot: running.snapshot,
      metrics,
      actions: running,
      log,
    });
  } catch (err) {
    const e = asKataError(err, "api-failed");
    log.error(e.message, { ERROR_CODE: e.code, REMEDY: e.remedy ?? "" });
    await systemd?.close();
    return 1;
  }
  await notifier.ready("serving the status API");
  const stopWatchdog = startWatchdog(notifier, first.clock, watchdogIntervalMs());

  // What is on disk first (no network), then the full pass; the timer keeps it converged.
  await running.observeOffline();
  void running.refresh();
  running.startTimer();

  const updates = systemd === null ? null : watchUpdateEngine(systemd.bus, log, (s) => running.onUpdateStatus(s));

  const reload = async (why: string): Promise<void> => {
    try {
      const config = await loadConfig(ctx.configFile);
      await running.reconfigure(configure(config));
      void running.refresh();
    } catch (err) {
      const e = asKataError(err);
      log.warning(`${why}: rejected the new configuration, keeping the old one: ${e.message}`, { ERROR_CODE: e.code });
    }
  };
  const stopWatching = watchFiles(
    {
      configFile: ctx.configFile,
      extensionsDir: paths.extensionsDir,
      rebootRequired: paths.host("/run/reboot-required"),
    },
    {
      configChanged: () => void reload("configuration changed"),
      extensionsChanged: (path) => void running.extensionsChanged(path),
      rebootRequired: () => log.info("/run/reboot-required appeared: an OS update waits for a reboot"),
    },
    log,
  );
  process.on("SIGHUP", () => void reload("SIGHUP"));

  await new Promise<void>((resolveStop) => {
    const stop = (signal: string) => {
      log.info(`${signal}: stopping`);
      resolveStop();
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  stopWatchdog();
  await notifier.stopping("stopping");
  updates?.stop();
  await stopWatching();
  await running.stop();
  await api.close();
  await systemd?.close();
  return 0;
}
