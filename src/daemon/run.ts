// kata-sysextd as a service: wires the reconciler, the API, signals and (later) D-Bus and watchers together.

import { createMetrics } from "../api/metrics.ts";
import { startApi } from "../api/server.ts";
import { buildReconcilerDeps, type CommandContext } from "../controller/commands.ts";
import { Reconciler } from "../controller/reconciler.ts";
import { initialStatus } from "../controller/snapshot.ts";
import { asKataError } from "../errors.ts";
import { DAEMON_VERSION } from "../version.ts";
import { Daemon } from "./daemon.ts";

export async function runDaemon(ctx: CommandContext): Promise<number> {
  const { log, config, paths } = ctx;
  const deps = buildReconcilerDeps(ctx);
  const metrics = createMetrics();
  let daemon: Daemon | null = null;
  const reconciler = new Reconciler({ ...deps, onProgress: (e) => daemon?.onEvent(e) });
  daemon = new Daemon({
    reconciler,
    source: deps.source,
    config,
    arch: deps.arch,
    metrics,
    clock: deps.clock,
    log,
    preflight: deps.preflight,
    initial: initialStatus({
      version: DAEMON_VERSION,
      startedAt: deps.clock.now().toISOString(),
      root: paths.root,
      name: config.source.name,
      arch: deps.arch,
    }),
  });
  const running = daemon;

  let api: Awaited<ReturnType<typeof startApi>>;
  try {
    api = await startApi({
      listen: config.api.enabled ? config.api.listen : null,
      socketPath: paths.apiSocket,
      snapshot: running.snapshot,
      metrics,
      actions: running,
      log,
    });
  } catch (err) {
    const e = asKataError(err, "api-failed");
    log.error(e.message, { ERROR_CODE: e.code, REMEDY: e.remedy ?? "" });
    return 1;
  }
  log.info(`serving the status API on ${api.tcpAddresses.join(", ") || "(no TCP)"} and ${paths.apiSocket}`);

  // What is on disk first (no network), then the full pass; the timer keeps it converged.
  await running.observeOffline();
  void running.refresh();
  running.startTimer();

  await new Promise<void>((resolveStop) => {
    const stop = (signal: string) => {
      log.info(`${signal}: stopping`);
      resolveStop();
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  await running.stop();
  await api.close();
  return 0;
}
