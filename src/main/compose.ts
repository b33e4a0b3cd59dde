// The composition root: the one place that builds the adapters (store, links, sources, systemd-sysext, preflight,
// containerd registration, canary, cluster files) from the configuration and hands them to the controller. The
// daemon (daemon/run.ts) and the one-shot commands (commands.ts) both wire through here; nothing under controller/
// builds an adapter.
import { canary, shippedCanaryImage } from "../canary/canary.ts";
import { ctrClient } from "../canary/ctr.ts";
import { canaryProbe } from "../canary/probe.ts";
import { systemClock, systemRandom } from "../clock.ts";
import { nfdFeatureFile } from "../cluster/nfd.ts";
import { RebootSentinel } from "../cluster/reboot-sentinel.ts";
import type { Config } from "../config/schema.ts";
import { containerdFiles } from "../containerd/registration.ts";
import { containerdRegistration } from "../containerd/stage.ts";
import { countKataSandboxes } from "../controller/observe.ts";
import type { ReconcilerDeps } from "../controller/reconciler.ts";
import { urlFileSource } from "../fetch/release-source.ts";
import type { Logger } from "../log/logger.ts";
import type { Member } from "../model.ts";
import type { HostPaths } from "../paths.ts";
import { hostArchitecture } from "../release/os-release.ts";
import { activeCompanions } from "../store/companions.ts";
import { ActiveLink } from "../store/link.ts";
import { stateStore } from "../store/state.ts";
import { ImageStore } from "../store/store.ts";
import { binarySysext } from "../sysext/sysext.ts";
import { systemdSysext } from "../sysext/via-systemd.ts";
import type { SystemdManager } from "../systemd/manager.ts";

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

/** Every adapter a Reconciler needs, built once for this configuration. */
export function composeReconciler(ctx: CommandContext): ReconcilerDeps {
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
    // The keyring is a host path like every other in the configuration: under --root, the root's file.
    source: urlFileSource(
      config,
      { ...source, keyring: paths.host(source.keyring) },
      { clock, random, log, signal: ctx.signal },
    ),
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
    state: stateStore(paths.stateFile, { primary: config.source.name, log, clock }),
    members,
    sysext: systemd === null ? binarySysext(paths) : systemdSysext(paths, systemd),
    // This machine's /proc, also under --root: the sandboxes that would be cut off run here.
    sandboxes: () => countKataSandboxes(),
    // Loaded when a switch asks for it, not by every pass (the boot step usually switches nothing).
    preflight: async () =>
      (await import("../preflight/run.ts")).runPreflight({
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
