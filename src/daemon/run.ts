// kata-sysextd as a service: wires the reconciler (through main/compose.ts), the API, systemd (D-Bus, sd_notify, watchdog),
// update_engine, file watches and signals together. Behaviour lives in daemon.ts and the modules it calls.
//
// Start-up order is chosen for time to the first answer on /status: the API listens first, on the initial
// document, and only then are the reconciler, fetching, OpenPGP, the preflight and D-Bus loaded (~200 ms of
// module loading). Actions asked for meanwhile wait for the daemon to be ready.
import { createMetrics } from "../api/metrics.ts";
import { type ApiActions, startApi } from "../api/server.ts";
import { canaryHandler } from "../canary/probe.ts";
import { systemClock, systemRandom } from "../clock.ts";
import { loadConfig } from "../config/load.ts";

import { initialStatus } from "../controller/snapshot.ts";
import { asKataError } from "../errors.ts";
import type { CommandContext } from "../main/compose.ts";
import { readBootedHost, withHostFields } from "../main/host-fields.ts";
import { hostArchitecture } from "../release/os-release.ts";
import type { StatusSnapshot } from "../status.ts";
import { createNotifier, startWatchdog, watchdogIntervalMs } from "../systemd/notify.ts";
import { DAEMON_VERSION } from "../version.ts";
import type { Daemon } from "./daemon.ts";

export async function runDaemon(given: CommandContext): Promise<number> {
  // Signals first: systemd may send SIGHUP (reload) or SIGTERM as soon as READY=1 is out, long before the rest is
  // wired up, and their default action would end the process (SIGHUP even as a "clean" exit Restart= ignores).
  const signals = earlySignals();
  const booted = await readBootedHost(given.paths);
  const ctx = await withHostFields(given, booted);
  const { log, paths } = ctx;
  const notifier = createNotifier({ log });
  const metrics = createMetrics();
  const initial = initialStatus({
    version: DAEMON_VERSION,
    startedAt: systemClock.now().toISOString(),
    root: paths.root,
    name: ctx.config.source.name,
    arch: ctx.config.source.arch ?? hostArchitecture(),
    // Read already: /status names the host from its first answer, not only after the first pass.
    host: booted,
    canaryHandler: ctx.config.health.canary ? canaryHandler(ctx.config.health.canaryRuntime) : null,
  });

  let daemon: Daemon | null = null;
  let markReady: (d: Daemon) => void = () => undefined;
  const ready = new Promise<Daemon>((resolve) => {
    markReady = resolve;
  });
  const actions: ApiActions = {
    refresh: (options) => ready.then((d) => d.refresh(options)),
    rollback: () => ready.then((d) => d.rollback()),
    versions: () => ready.then((d) => d.versions()),
    preflight: () => ready.then((d) => d.preflight()),
    canary: (onPhase) => ready.then((d) => d.canary(onPhase)),
  };

  let api: Awaited<ReturnType<typeof startApi>>;
  try {
    api = await startApi({
      listen: ctx.config.api.enabled ? ctx.config.api.listen : null,
      socketPath: paths.apiSocket,
      snapshot: () => daemon?.snapshot() ?? initial,
      metrics,
      actions,
      log,
    });
  } catch (err) {
    const e = asKataError(err, "api-failed");
    log.error(e.message, { ERROR_CODE: e.code, REMEDY: e.remedy ?? "" });
    return 1;
  }
  await notifier.ready("serving the status API");
  const stopWatchdog = startWatchdog(notifier, systemClock, watchdogIntervalMs());

  const [{ composeReconciler }, { Reconciler }, { Daemon }, { connectSystemd }, { watchFiles }] = await Promise.all([
    import("../main/compose.ts"),
    import("../controller/reconciler.ts"),
    import("./daemon.ts"),
    import("../main/systemd.ts"),
    import("./watch.ts"),
  ]);
  const systemd = await connectSystemd({
    clock: systemClock,
    random: systemRandom,
    log,
    manageUnits: paths.root === "/",
  });
  // Stopping aborts downloads and retry waits, so a stop is not held up past TimeoutStopSec by a slow mirror.
  const stopping = new AbortController();
  signals.onStop((signal) => stopping.abort(new Error(`kata-sysextd is stopping (${signal})`)));
  const configure = (config: CommandContext["config"]) => {
    const deps = composeReconciler({ ...ctx, config, systemd: systemd?.manager ?? null, signal: stopping.signal });
    return { ...deps, reconciler: new Reconciler({ ...deps, onProgress: (e) => daemon?.onEvent(e) }) };
  };
  const first = configure(ctx.config);
  let lastState: StatusSnapshot["state"] | null = null;
  const running = new Daemon({
    ...first,
    clock: systemClock,
    metrics,
    initial,
    onStatus: (doc) => {
      if (doc.state === lastState) return;
      lastState = doc.state;
      void notifier.status(
        `${doc.state}; kata ${doc.members[0].active ?? "none"}${doc.members[0].merged ? " merged" : ""}`,
      );
    },
  });
  daemon = running;
  markReady(running);

  // What is on disk first (no network), then the full pass; the timer keeps it converged. Canaries a killed daemon
  // left in containerd go first (the first canary sweeps too, should containerd not answer yet).
  await running.sweepCanaries();
  await running.observeOffline();
  void running.refresh();
  running.startTimer();

  // Without a system bus dbus-next (some 10 MiB resident) stays unloaded: update_engine is not asked.
  const updates =
    systemd === null
      ? null
      : (await import("../systemd/update-engine.ts")).watchUpdateEngine(systemd.bus, log, (s) =>
          running.onUpdateStatus(s),
        );

  const readConfig = async (why: string): Promise<void> => {
    try {
      // The file the daemon started with must still be there; one started on the defaults reads a new one.
      const { config, notes } = await loadConfig(ctx.configFile, {
        required: ctx.configDefaults !== true,
        host: paths.host,
      });
      for (const note of notes) log.notice(note);
      const next = configure(config);
      // Accepted, or the same as what runs: a rejection shown earlier is over.
      running.configRead(null);
      // Not awaited: the next read is shown at once, not after the pass in flight (the swap waits for it).
      running.reconfigure(next, why === "SIGHUP" ? "signal" : "file").then(
        (changed) => {
          if (changed) void running.refresh();
        },
        () => undefined, // logged by the daemon's queue
      );
    } catch (err) {
      const e = asKataError(err);
      log.warning(`${why}: rejected the new configuration, keeping the old one: ${e.message}`, { ERROR_CODE: e.code });
      running.configRead({
        at: systemClock.now().toISOString(),
        code: e.code,
        message: e.message,
        remedy: `${e.remedy ? `${e.remedy}; ` : ""}kata-sysextd runs the configuration it had meanwhile, and a restart or reboot reads the file as it is now (exit 2 on an invalid one, the unit stays failed)`,
      });
    }
  };
  // One read at a time, in the order the changes came: what /status shows is the last read's verdict.
  let reads = Promise.resolve();
  const reload = (why: string): void => {
    reads = reads.then(() => readConfig(why));
  };
  // The sentinel as configured at start (kured's default when turned off): our own writes are no news.
  const sentinel = ctx.config.cluster.rebootSentinel || "/run/reboot-required";
  const stopWatching = watchFiles(
    {
      configFile: ctx.configFile,
      // Its Path=, MatchPattern= and Verify= are configuration too: an edit there is taken as one in config.toml.
      transferFile: ctx.config.source.sysupdate === null ? null : paths.host(ctx.config.source.sysupdate),
      extensionsDir: paths.extensionsDir,
      rebootRequired: paths.host(sentinel),
      stateFile: paths.stateFile,
    },
    {
      configChanged: () => reload("configuration changed"),
      extensionsChanged: (path) => void running.extensionsChanged(path),
      rebootRequired: () =>
        void first.reboot
          .isOurs()
          .then((ours) => ours || log.info(`${sentinel} appeared: an OS update waits for a reboot`)),
      // A failure is logged by the daemon's queue.
      stateFilesChanged: () => void running.stateFilesChanged().catch(() => undefined),
    },
    log,
  );
  signals.onReload(() => reload("SIGHUP"));

  const signal = await signals.stopped;
  log.info(`${signal}: stopping`);
  stopWatchdog();
  await notifier.stopping("stopping");
  stopping.abort(new Error("kata-sysextd is stopping"));
  updates?.stop();
  await stopWatching();
  await running.stop();
  await api.close();
  await systemd?.close();
  return 0;
}

/**
 * SIGTERM/SIGINT and SIGHUP caught from the very start. A reload that comes before the daemon can reload waits for
 * it; a stop is remembered (later ones are ignored: a second SIGTERM must not cut a stop short).
 */
function earlySignals() {
  let stopSignal: string | null = null;
  let reloadWaiting = false;
  let reloadHandler: (() => void) | null = null;
  const stopHandlers: Array<(signal: string) => void> = [];
  let resolveStopped: (signal: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => {
    resolveStopped = resolve;
  });
  const stop = (signal: string): void => {
    if (stopSignal !== null) return;
    stopSignal = signal;
    for (const handler of stopHandlers) handler(signal);
    resolveStopped(signal);
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGHUP", () => {
    if (reloadHandler === null) reloadWaiting = true;
    else reloadHandler();
  });
  return {
    stopped,
    onStop(handler: (signal: string) => void): void {
      if (stopSignal !== null) handler(stopSignal);
      else stopHandlers.push(handler);
    },
    onReload(handler: () => void): void {
      reloadHandler = handler;
      if (reloadWaiting) {
        reloadWaiting = false;
        handler();
      }
    },
  };
}
