// A Reconciler wired as the daemon wires it (composeReconciler, src/main/compose.ts) on a sandbox root, with the configuration the
// test wrote there: the real store, links, sources and containerd files. systemd-sysext, the preflight and the
// log are what the test gives; under --root the real systemd-sysext cannot merge a symlinked image
// (ENVIRONMENT.md), so tests pass a Sysext whose merge is reported unobservable, as the daemon does there.
import type { Clock } from "../../src/clock.ts";
import { loadConfig } from "../../src/config/load.ts";
import { Reconciler } from "../../src/controller/reconciler.ts";
import { createLogger, type Logger } from "../../src/log/logger.ts";
import { composeReconciler } from "../../src/main/compose.ts";
import type { ReconcileEvent } from "../../src/model.ts";
import { hostPaths } from "../../src/paths.ts";
import type { PreflightSummary } from "../../src/status.ts";
import type { Sysext } from "../../src/sysext/sysext.ts";

export interface ReconcilerOptions {
  sysext: Sysext;
  /** The preflight: absent keeps the daemon's own; `null` runs none (no health stage). */
  preflight?: (() => Promise<PreflightSummary>) | null;
  log?: Logger;
  onProgress?: (event: ReconcileEvent) => void;
  /** The clock passes read; the system's when absent. */
  clock?: Clock;
  /** The canary's OCI image tarball, when the test builds its own (a wrong marker, a hang). */
  canaryImage?: string;
  /**
   * Running Kata sandboxes; none when absent. A pass in this process would count the stand-in shims of tests
   * running at the same time (they are in PID namespaces of their own, but a namespace's processes show in the
   * host's /proc): the count from the real /proc is tested through the daemon in its own PID namespace
   * (reboot.test.ts, deferral.test.ts), and countKataSandboxes itself on a /proc-shaped tree.
   */
  sandboxes?: () => Promise<number>;
}

export async function reconcilerOn(root: string, opts: ReconcilerOptions): Promise<Reconciler> {
  const paths = hostPaths(root);
  const log = opts.log ?? createLogger(() => undefined);
  const deps = composeReconciler({
    paths,
    config: (await loadConfig(paths.configFile)).config,
    configFile: "",
    log,
    ...(opts.canaryImage === undefined ? {} : { canaryImage: opts.canaryImage }),
  });
  return new Reconciler({
    ...deps,
    sysext: opts.sysext,
    sandboxes: opts.sandboxes ?? (async () => 0),
    ...(opts.clock === undefined ? {} : { clock: opts.clock }),
    ...(opts.preflight === undefined ? {} : { preflight: opts.preflight ?? undefined }),
    ...(opts.onProgress === undefined ? {} : { onProgress: opts.onProgress }),
  });
}

/** systemd-sysext under --root: refreshes do nothing and the merge of the active link cannot be observed. */
export function unobservedSysext(): Sysext {
  return { limitation: "merge not observable under --root", refresh: async () => {}, merged: async () => [] };
}
