// An activation deferred for running Kata sandboxes: since when passes have been deferring, whether to ask the
// cluster's reboot coordinator for a reboot (reboot.ts decides, records.ts writes), what the boot step activates
// instead of the old image, and what /status and state.json say about the wait.
import { KataError } from "../errors.ts";
import type { Targets } from "../model.ts";
import type { WaitingStatus } from "../status.ts";
import { activeFile } from "../store/link.ts";
import type { RebootRequest } from "../store/state.ts";
import { memberNamed } from "./decide.ts";
import { deferredTargets, stagedVersion } from "./decisions.ts";
import type { ReconcilerDeps } from "./deps.ts";
import type { Observed } from "./observe.ts";
import { decideReboot, describeHeldBack, type HeldBackImage } from "./reboot.ts";
import type { Records } from "./records.ts";

/** Records the deferral and returns what the pass's outcome carries about it. */
export async function deferActivation(
  deps: Pick<ReconcilerDeps, "config" | "clock" | "members">,
  records: Records,
  observed: Observed,
  targets: Targets,
  why: string,
) {
  const { config, clock } = deps;
  const now = clock.now();
  const waitingSince = observed.state.waitingSince ?? now.toISOString();
  const { deferred, heldBack } = deferredTargets(
    observed.members.map((view) => ({
      name: view.name,
      primary: memberNamed(deps, view.name).primary,
      active: activeFile(view.link),
      stored: view.images.map((i) => i.file),
    })),
    targets,
  );
  const next = observed.state.nextBoot;
  const verdict = decideReboot({
    heldBack,
    activation: config.policy.activation,
    waitingSinceMs: Date.parse(waitingSince),
    maxWaitSeconds: config.policy.maxWaitSeconds,
    nowMs: now.getTime(),
    // Pending until booted: runBoot forgets it once the machine runs that release.
    osUpdate:
      next !== null && next.flatcarVersion !== observed.host.versionId
        ? { ...next, kata: stagedVersion(next, deps.members[0]?.name ?? "") }
        : null,
  });
  await records.update(() => (verdict.request ? { deferred, waitingSince } : { waitingSince }));
  const reboot = await records.settleReboot(
    verdict.request ? verdict.reason : null,
    "the policy no longer asks for one (policy.activation, policy.max_wait_seconds)",
  );
  // "wait": the next pass should come as soon as the last sandbox ends, not at the next timer tick.
  const waitFor = config.policy.activation === "wait" ? ("sandboxes" as const) : null;
  const { activation, maxWaitSeconds } = config.policy;
  const rebootAt =
    activation === "wait" && maxWaitSeconds > 0
      ? new Date(Date.parse(waitingSince) + maxWaitSeconds * 1000).toISOString()
      : null;
  const waiting: WaitingStatus = {
    members: heldBack.map((h) => ({ name: h.member, version: h.version, file: deferred[h.member] ?? "" })),
    sandboxes: observed.sandboxesRunning,
    since: waitingSince,
    rebootAt,
  };
  const error = deferralError(why, heldBack, activation, rebootAt, reboot);
  return { reboot, requeueAfterMs: verdict.request ? null : verdict.recheckAfterMs, waitFor, waiting, error };
}

/** What a deferred pass records as its `error` and `remedy`: what waits, why, and how the wait ends. */
function deferralError(
  why: string,
  heldBack: readonly HeldBackImage[],
  activation: string,
  rebootAt: string | null,
  reboot: RebootRequest | null,
): KataError {
  const what =
    heldBack.length === 0
      ? "activation deferred"
      : `${describeHeldBack(heldBack)} ${heldBack.length === 1 ? "waits" : "wait"}`;
  const remedy =
    reboot !== null
      ? `the boot step activates it at the next boot, which is asked for: ${reboot.reason}`
      : activation === "next-boot"
        ? "the boot step activates it at the next boot, before containerd starts; drain and reboot the node to take it now"
        : `it activates once the last Kata sandbox has ended${rebootAt === null ? "" : `; if sandboxes still run at ${rebootAt} (policy.max_wait_seconds), a reboot is asked for instead`}; drain the node's Kata pods to take it now`;
  return new KataError("deferred", `${what}: ${why}`, { remedy });
}
