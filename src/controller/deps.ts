// What the controller is built from: every adapter, made once in src/main/compose.ts and handed in.
import type { CanaryProbe } from "../canary/probe.ts";
import type { Clock, Random } from "../clock.ts";
import type { ClusterReadiness } from "../cluster/nfd.ts";
import type { RebootSentinel } from "../cluster/reboot-sentinel.ts";
import type { Config } from "../config/schema.ts";
import type { RuntimeRegistration } from "../containerd/stage.ts";
import type { Logger } from "../log/logger.ts";
import type { Member, ReconcileEvent } from "../model.ts";
import type { HostPaths } from "../paths.ts";
import type { PreflightSummary } from "../status.ts";
import type { StateStore } from "../store/state.ts";
import type { ImageStore } from "../store/store.ts";
import type { Sysext } from "../sysext/sysext.ts";

export interface ReconcilerDeps {
  paths: HostPaths;
  config: Config;
  arch: string;
  log: Logger;
  clock: Clock;
  random: Random;
  store: ImageStore;
  /** state.json: the controller is its one writer in the process (records.ts). */
  state: StateStore;
  /** Kata first, then its companion extensions; each with its own link and source. */
  members: Member[];
  sysext: Sysext;
  /** How many Kata sandboxes run now: activation waits for them (policy.activation). */
  sandboxes: () => Promise<number>;
  preflight?: () => Promise<PreflightSummary>;
  /** containerd registration; absent when [containerd] enabled = false. */
  runtime?: RuntimeRegistration;
  /** The reboot coordinator's sentinel file ([cluster] reboot_sentinel). */
  reboot: RebootSentinel;
  /** The canary, the last health stage of a switch; absent when [health] canary = false. */
  canary?: CanaryProbe;
  /** The node's readiness for the cluster (NFD's feature file); absent when [cluster] nfd_features_file = "". */
  cluster?: ClusterReadiness;
  /** Called whenever something /status shows changes. */
  onProgress?: (event: ReconcileEvent) => void;
}
