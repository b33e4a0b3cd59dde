// The status document (docs/interface.md "HTTP API"). The reconciler owns one in memory and replaces it on every
// change; the API serves it as is, so a request never touches disk, D-Bus or the network. Its types are derived
// from the JSON schemas the API serves it with (api/schemas.ts), so the two cannot drift apart.

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

export const NO_REBOOT: RebootStatus = { requested: false, reason: null, since: null, sentinel: null };
