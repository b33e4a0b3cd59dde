// The one-shot commands `kata-sysextd --once` and `kata-sysextd boot`, and the adapter wiring the daemon
// shares with them.
import { canary, shippedCanaryImage } from "../canary/canary.ts";
import { ctrClient } from "../canary/ctr.ts";
import { canaryProbe } from "../canary/probe.ts";
import { systemClock, systemRandom } from "../clock.ts";
import { nfdFeatureFile } from "../cluster/nfd.ts";
import { RebootSentinel } from "../cluster/reboot-sentinel.ts";
import type { Config } from "../config/schema.ts";
import { containerdFiles } from "../containerd/registration.ts";
import { containerdRegistration } from "../containerd/stage.ts";
import type { Logger } from "../log/logger.ts";
import type { HostPaths } from "../paths.ts";
import { runPreflight } from "../preflight/run.ts";
import { hostArchitecture } from "../release/os-release.ts";
import { activeCompanions } from "../store/companions.ts";
import { ActiveLink } from "../store/link.ts";
import { clearNextBoot } from "../store/state.ts";
import { ImageStore } from "../store/store.ts";
import { binarySysext } from "../sysext/sysext.ts";
import { systemdSysext } from "../sysext/via-systemd.ts";
import type { SystemdManager } from "../systemd/manager.ts";
import { withHostFields } from "./host-fields.ts";
import { type Member, type PassOutcome, Reconciler, type ReconcilerDeps } from "./reconciler.ts";
import { urlFileSource } from "./source.ts";

export interface CommandContext {
  paths: HostPaths;
  config: Config;
  configFile: string;
  /** The configuration is the defaults because no file was at the default path (a reload may find one). */
  configDefaults?: boolean;
  log: Logger;
  /**
   * systemd over D-Bus, on a real host. Null under --root (the sandbox is not this machine's systemd's
   * business) or where no system bus answers; then systemd-sysext runs as a binary and containerd is not restarted.
   */
  systemd?: SystemdManager | null;
  /** Aborts the network work of passes (the daemon stopping); a switch under way always completes. */
  signal?: AbortSignal;
  /** The canary's OCI image tarball; default: the one kata-sysextd ships (shippedCanaryImage). */
  canaryImage?: string;
}

export function buildReconcilerDeps(ctx: CommandContext): ReconcilerDeps {
  const { paths, config, log } = ctx;
  const systemd = ctx.systemd ?? null;
  const arch = config.source.arch ?? hostArchitecture();
  const clock = systemClock;
  const random = systemRandom;
  const files = containerdFiles(paths, config.containerd);
  const member = (name: string, primary: boolean, source: Config["source"], versions: string): Member => ({
    name,
    primary,
    versions,
    link: new ActiveLink(paths.activeLink(name), paths.storeDir),
    source: urlFileSource(config, source, { clock, random, log, signal: ctx.signal }),
  });
  const store = new ImageStore(paths.storeDir, paths.quarantineDir);
  const members = [
    member(config.source.name, true, config.source, config.policy.versions),
    ...config.companions.map((c) => member(c.name, false, { ...config.source, ...c, path: null }, c.versions)),
  ];
  return {
    paths,
    config,
    arch,
    log,
    clock,
    random,
    store,
    members,
    sysext: systemd === null ? binarySysext(paths) : systemdSysext(paths, systemd),
    preflight: async () =>
      runPreflight({
        paths,
        containerd: config.containerd.enabled ? config.containerd : null,
        companions: await activeCompanions(paths, config),
      }),
    reboot: new RebootSentinel({
      sentinel: config.cluster.rebootSentinel === "" ? null : config.cluster.rebootSentinel,
      host: paths.host,
      marker: paths.rebootMarker,
    }),
    runtime: config.containerd.enabled
      ? containerdRegistration({
          files,
          root: paths.root,
          host: paths.host,
          pinned: config.containerd.handlers,
          systemd,
          restart: config.containerd.restart,
          log,
        })
      : undefined,
    canary: config.health.canary
      ? canaryProbe({
          canary: canary({
            containerd: ctrClient(paths.host(config.containerd.address), `${paths.runDir}/canary`),
            imageFile: ctx.canaryImage ?? shippedCanaryImage(),
            clock,
            random,
            log,
          }),
          runtime: config.health.canaryRuntime,
          timeoutSeconds: config.health.canaryTimeoutSeconds,
          host: paths.host,
        })
      : undefined,
    cluster:
      config.cluster.nfdFeaturesFile === ""
        ? undefined
        : nfdFeatureFile(paths.host(config.cluster.nfdFeaturesFile), log),
  };
}

/** Exit status per docs/interface.md: 0 active and verified, 1 failed (deferred counts: the target is not active). */
export function exitCode(outcome: PassOutcome): number {
  return outcome.result === "ok" ? 0 : 1;
}

function report(ctx: CommandContext, what: string, outcome: PassOutcome): void {
  const active = outcome.observed?.link.kind === "store" ? outcome.observed.link.file : "none";
  if (outcome.result === "ok") {
    ctx.log.info(`${what}: ok, active ${active}${outcome.unconfirmed ? ` (${outcome.unconfirmed})` : ""}`);
  } else if (outcome.result === "deferred") {
    ctx.log.notice(`${what}: deferred, active ${active}`);
  } else {
    ctx.log.error(`${what}: failed: ${outcome.error?.message ?? "unknown"}`, { REMEDY: outcome.error?.remedy ?? "" });
  }
}

export async function runOnce(given: CommandContext): Promise<number> {
  const ctx = await withHostFields(given);
  const outcome = await new Reconciler(buildReconcilerDeps(ctx)).reconcile();
  report(ctx, "reconcile", outcome);
  return exitCode(outcome);
}

export async function runBoot(given: CommandContext): Promise<number> {
  const ctx = await withHostFields(given);
  const reconciler = new Reconciler(buildReconcilerDeps(ctx));
  const outcome = await reconciler.boot();
  report(ctx, "boot", outcome);
  // The reboot kata-sysextd asked for has happened. A pass that reached its goal withdrew the request already;
  // one that failed withdraws it too, or a sentinel on a persistent path would have the node rebooted again and
  // again. A pass that deferred (sandboxes already running) asked anew.
  if (outcome.result === "failed") await reconciler.settleReboot(null, "the reboot it asked for has happened");
  // Booted into the release the image was staged for: the next boot is now this boot.
  const observed = outcome.observed;
  if (outcome.result === "ok" && observed?.state.nextBoot?.flatcarVersion === observed?.host.versionId) {
    await clearNextBoot(ctx.paths.stateFile, { log: ctx.log });
  }
  return exitCode(outcome);
}
