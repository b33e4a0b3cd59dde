// The status document (docs/interface.md "HTTP API") and the snapshot it is made from. The daemon owns one
// StatusSnapshot in memory and replaces it on every change; the API serves it as the StatusDocument, so a request
// never touches disk, D-Bus or the network. The document's types are derived from the JSON schemas the API serves
// it with (api/schemas.ts), so the two cannot drift apart. The snapshot is keyed by member all the way down: the
// document's `extension` (Kata's own block, kept for clients) and `nextBoot.kata` are read off members[0] only when
// the document is built for a route (statusDocument in api/routes.ts).

import type { PreflightCheck, PreflightSummary, StatusDocument } from "./api/schemas.ts";

export type {
  CanaryStatus,
  DaemonState,
  DownloadProgress,
  PreflightCheck,
  PreflightSummary,
  SkippedRelease,
  StatusDocument,
} from "./api/schemas.ts";

export type CheckStatus = PreflightCheck["status"];
export type HypervisorVerdict = PreflightSummary["hypervisors"][number];
/** One extension of the managed set: Kata itself or a companion (e.g. cloud-hypervisor). */
export type MemberStatus = StatusDocument["members"][number];
/** Whether kata-sysextd asks the cluster's reboot coordinator for a reboot (controller/reboot.ts), and why. */
export type RebootStatus = StatusDocument["reboot"];
export type ContainerdRegistration = NonNullable<StatusDocument["containerd"]>;
/** An activation that waits for running Kata sandboxes to end, and when a reboot is asked for instead. */
export type WaitingStatus = NonNullable<StatusDocument["waiting"]>;
/** A configuration the running daemon read and refused; it runs the one it had. */
export type ConfigRejection = NonNullable<StatusDocument["configRejected"]>;

/** One member as the daemon keeps it: what /status shows of it, and its active image's path and trust. */
export interface MemberSnapshot extends MemberStatus {
  /** The active image in the store, or null when none is active. */
  image: string | null;
  /** "checksum" or "signature": how the active image was verified; null when none is active. */
  trust: string | null;
}

/** What the daemon shows: the status document without Kata's copy of its member (`extension`, `nextBoot.kata`). */
export interface StatusSnapshot extends Omit<StatusDocument, "extension" | "members" | "nextBoot"> {
  /** Every member, Kata (the primary) first. */
  members: [MemberSnapshot, ...MemberSnapshot[]];
  /** An OS update waiting for its reboot, and whether anything was staged; each member's version is its `nextBoot`. */
  nextBoot: Omit<NonNullable<StatusDocument["nextBoot"]>, "kata"> | null;
  /** Why merges cannot be confirmed here (systemd-sysext 252 under --root ignores symlinked images), or null. */
  limitation: string | null;
}

export const NO_REBOOT: RebootStatus = { requested: false, reason: null, since: null, sentinel: null };
