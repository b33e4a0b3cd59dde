// The status document (docs/interface.md "HTTP API"). The reconciler owns one in memory and replaces it on every
// change; the API serves it as is, so a request never touches disk, D-Bus or the network.

export type DaemonState = "idle" | "resolving" | "fetching" | "verifying" | "activating" | "degraded" | "error";
export type CheckStatus = "pass" | "warn" | "fail" | "skip";

export interface PreflightCheck {
  id: string;
  status: CheckStatus;
  detail: string;
  remedy?: string | null;
  /** The hypervisor this check is about, when it is hypervisor specific (qemu, clh, fc, …). */
  hypervisor?: string | null;
}

export interface PreflightSummary {
  ok: boolean;
  failed: number;
  warnings: number;
  checks: PreflightCheck[];
  /** One verdict per configured hypervisor: can it run Kata on this host? */
  hypervisors: HypervisorVerdict[];
}

export interface HypervisorVerdict {
  name: string;
  ok: boolean;
  /** One line: "qemu: ready", "qemu: cannot run Kata: vhost-vsock failed". */
  verdict: string;
}

export interface DownloadProgress {
  file: string;
  bytes: number;
  total: number | null;
  bytesPerSecond: number;
}

/** One extension of the managed set: Kata itself or a companion (e.g. cloud-hypervisor). */
export interface MemberStatus {
  name: string;
  active: string | null;
  previous: string | null;
  /** The version staged for the next boot's OS release, or null. */
  nextBoot: string | null;
  merged: boolean;
  /**
   * Versions rolled back from: passes skip them until the configuration's [source], [policy] or [[companion]]
   * changes, or `kata-sysextctl refresh --release-holds`.
   */
  held: string[];
}

/** Whether kata-sysextd asks the cluster's reboot coordinator for a reboot (controller/reboot.ts), and why. */
export interface RebootStatus {
  requested: boolean;
  reason: string | null;
  /** When it was first asked for (ISO-8601). */
  since: string | null;
  /** The sentinel file that carries the request, and whether kata-sysextd wrote it or found it there. */
  sentinel: { path: string; owner: "kata-sysextd" | "other" } | null;
}

export const NO_REBOOT: RebootStatus = { requested: false, reason: null, since: null, sentinel: null };

/** The last canary of one runtime handler: when it ran, how long it took, and how it ended. */
export interface CanaryStatus {
  handler: string;
  runtime: string;
  /** The Kata image (store file) it ran with. */
  image: string | null;
  at: string;
  durationMs: number;
  outcome: "passed" | "failed";
  /** Where it failed: image, start, timeout, output or exit; null when it passed. */
  step: string | null;
  reason: string | null;
}

export interface StatusDocument {
  daemon: { version: string; startedAt: string; root: string };
  host: { id: string | null; versionId: string | null; sysextLevel: string | null; arch: string };
  extension: {
    name: string;
    active: string | null;
    previous: string | null;
    merged: boolean;
    image: string | null;
    /** "checksum" or "signature": the trust level the active image was verified with. */
    trust: string | null;
    /** Why the merge cannot be confirmed here, e.g. systemd-sysext 252 under --root ignores symlinked images. */
    limitation: string | null;
  };
  /** An OS update waiting for its reboot, and what was staged for it; `skipped` as below, for that release. */
  nextBoot: null | {
    flatcarVersion: string;
    kata: string | null;
    staged: boolean;
    reason: string | null;
    skipped: SkippedRelease[];
  };
  reboot: RebootStatus;
  /** Every managed extension, Kata first; a single-extension setup lists Kata alone. */
  members: MemberStatus[];
  preflight: PreflightSummary | null;
  lastReconcile: null | {
    at: string;
    result: "ok" | "failed" | "deferred";
    error: string | null;
    remedy: string | null;
  };
  download: DownloadProgress | null;
  /**
   * state.json and its last good copy were unusable and were moved aside (`movedTo`): the rollback target, holds
   * and next boot were forgotten. Null when not; while set, `state` is "degraded".
   */
  stateDamage: null | { movedTo: string; remedy: string };
  /**
   * Published releases the last pass left out because they failed verification or inspection before, newest
   * first; the node may run an older release than the newest published one because of them.
   */
  skipped: SkippedRelease[];
  /** The canary ([health]): the handler it proves (null when off) and its last result per handler. */
  canary: { handler: string | null; results: CanaryStatus[] };
  /** The last containerd registration: the base it was merged into and why, and every handler's verdict. */
  containerd: ContainerdRegistration | null;
  state: DaemonState;
}

export interface ContainerdRegistration {
  base: string | null;
  why: string | null;
  /** Each shipped (or pinned) runtime handler: registered, or the reason it is not. */
  handlers: {
    name: string;
    configPath: string | null;
    registered: boolean;
    reason: string | null;
    pinned: boolean;
  }[];
}

export interface SkippedRelease {
  member: string;
  version: string;
  file: string;
  reason: string;
  /** When a pass tries it again; null: never (the same bytes failed inspection). */
  retryAt: string | null;
}
