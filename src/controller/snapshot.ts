// Builds the status snapshot from what a pass observed, every member alike (Kata is members[0]). Pure: the daemon
// keeps the result in memory, and the API builds the /status document from it (statusDocument in api/routes.ts).

import type { HostRelease } from "../release/os-release.ts";
import {
  type CanaryStatus,
  type ContainerdRegistration,
  type DaemonState,
  type MemberSnapshot,
  NO_REBOOT,
  type PreflightSummary,
  type RebootStatus,
  type StatusSnapshot,
} from "../status.ts";
import { activeFile } from "../store/link.ts";
import type { NextBoot, RebootRequest } from "../store/state.ts";
import { previousOf, stagedOf, stagedVersion } from "./decisions.ts";
import type { MemberView, Observed } from "./observe.ts";
import type { PassOutcome } from "./reconciler.ts";
import { skippedReleases } from "./versions.ts";

export interface SnapshotInput {
  base: StatusSnapshot;
  outcome: PassOutcome;
  at: string;
  preflight: PreflightSummary | null;
  /** The containerd registration's last decision; undefined keeps what the document had. */
  containerd?: ContainerdRegistration | null;
}

export function initialStatus(opts: {
  version: string;
  startedAt: string;
  root: string;
  name: string;
  arch: string;
  /** The booted OS as read at start; null when its os-release could not be read. */
  host: Pick<HostRelease, "id" | "versionId" | "sysextLevel"> | null;
  /** The handler the canary proves; null when the canary is off. */
  canaryHandler?: string | null;
}): StatusSnapshot {
  return {
    daemon: { version: opts.version, startedAt: opts.startedAt, root: opts.root },
    host: {
      id: opts.host?.id ?? null,
      versionId: opts.host?.versionId ?? null,
      sysextLevel: opts.host?.sysextLevel ?? null,
      arch: opts.arch,
    },
    nextBoot: null,
    reboot: NO_REBOOT,
    members: [
      {
        name: opts.name,
        active: null,
        previous: null,
        nextBoot: null,
        merged: false,
        held: [],
        image: null,
        trust: null,
      },
    ],
    limitation: null,
    preflight: null,
    lastReconcile: null,
    download: null,
    stateDamage: null,
    configRejected: null,
    waiting: null,
    skipped: [],
    canary: { handler: opts.canaryHandler ?? null, results: [] },
    containerd: null,
    // A daemon that has not concluded its first pass is still finding out.
    state: "resolving",
  };
}

/** What /status shows of the next boot state.json records; each member's staged version is in its own entry. */
export function nextBootStatus(next: NextBoot | null): StatusSnapshot["nextBoot"] {
  if (next === null) return null;
  const { flatcarVersion, staged, reason } = next;
  return { flatcarVersion, staged, reason, skipped: skippedReleases(next.skipped) };
}

/** The snapshot with a newly recorded (or forgotten) next boot: its block and each member's staged version. */
export function withNextBoot(doc: StatusSnapshot, next: NextBoot | null): StatusSnapshot {
  const [first, ...rest] = doc.members;
  const staged = (m: MemberSnapshot): MemberSnapshot => ({ ...m, nextBoot: stagedVersion(next, m.name) });
  return { ...doc, nextBoot: nextBootStatus(next), members: [staged(first), ...rest.map(staged)] };
}

/** One member as a pass observed it, with the versions of the images state.json names for it. */
function memberSnapshot(view: MemberView, state: Observed["state"]): MemberSnapshot {
  const image = (file: string | null) => view.images.find((i) => i.file === file);
  const version = (file: string | null) => image(file)?.version ?? null;
  const active = image(activeFile(view.link));
  return {
    name: view.name,
    active: active?.version ?? null,
    previous: version(previousOf(state, view.name)),
    nextBoot: version(stagedOf(state.nextBoot, view.name)),
    merged: view.merged,
    held: (state.held[view.name] ?? []).map((file) => version(file) ?? file),
    image: active?.path ?? null,
    trust: active?.trust ?? null,
  };
}

export function statusAfterPass({ base, outcome, at, preflight, containerd }: SnapshotInput): StatusSnapshot {
  const observed = outcome.observed;
  let members: StatusSnapshot["members"];
  if (observed !== null) {
    const [first, ...rest] = observed.members;
    members = [memberSnapshot(first, observed.state), ...rest.map((m) => memberSnapshot(m, observed.state))];
  } else {
    // The pass ended before it could look (the store's lock, say): nothing is known to be active or merged, as
    // for the next boot. Holds are the operator's and stay shown.
    const [first, ...rest] = base.members;
    const unknown = (m: MemberSnapshot): MemberSnapshot => ({
      ...m,
      active: null,
      previous: null,
      nextBoot: null,
      merged: false,
      image: null,
      trust: null,
    });
    members = [unknown(first), ...rest.map(unknown)];
  }
  const after: StatusSnapshot = {
    ...base,
    containerd: containerd === undefined ? base.containerd : containerd,
    host:
      observed === null
        ? base.host
        : {
            id: observed.host.id,
            versionId: observed.host.versionId,
            sysextLevel: observed.host.sysextLevel,
            arch: observed.arch,
          },
    nextBoot: nextBootStatus(observed?.state.nextBoot ?? null),
    reboot: outcome.reboot === undefined ? base.reboot : rebootStatus(outcome.reboot),
    members,
    limitation: outcome.unconfirmed,
    preflight,
    lastReconcile: {
      at,
      result: outcome.result,
      error: outcome.error?.message ?? null,
      remedy: outcome.error?.remedy ?? null,
    },
    download: null,
    stateDamage: observed === null ? base.stateDamage : observed.stateDamage,
    // A failed pass says nothing about a wait for sandboxes (its re-check stays due); any other ends or renews it.
    waiting:
      outcome.result === "deferred" ? (outcome.waiting ?? null) : outcome.result === "failed" ? base.waiting : null,
    skipped: observed === null ? base.skipped : skippedReleases(observed.state.skipped),
  };
  return { ...after, state: restingState(after) };
}

const RESTING: ReadonlySet<DaemonState> = new Set(["idle", "degraded", "error"]);

/**
 * The state between passes: "error" when the last pass failed with nothing active, "degraded" when it failed
 * otherwise or something else needs the operator (a failing preflight check, a lost state file, a rejected
 * configuration), else "idle".
 */
export function restingState(
  doc: Pick<StatusSnapshot, "lastReconcile" | "members" | "preflight" | "stateDamage" | "configRejected">,
): DaemonState {
  if (doc.lastReconcile?.result === "failed") return doc.members[0].active === null ? "error" : "degraded";
  const attention = (doc.preflight !== null && !doc.preflight.ok) || doc.stateDamage !== null;
  return attention || doc.configRejected !== null ? "degraded" : "idle";
}

/** The snapshot with its state judged again after a change between passes; a pass under way keeps its step. */
export function withRestingState(doc: StatusSnapshot): StatusSnapshot {
  return RESTING.has(doc.state) ? { ...doc, state: restingState(doc) } : doc;
}

/** /status's reboot block for the request persisted in state.json. */
export function rebootStatus(request: RebootRequest | null): RebootStatus {
  return request === null
    ? NO_REBOOT
    : { requested: true, reason: request.reason, since: request.since, sentinel: request.sentinel };
}

/** The document with `result` as its handler's last canary (one entry per handler, the newest kept). */
export function withCanary(doc: StatusSnapshot, result: CanaryStatus): StatusSnapshot {
  const others = doc.canary.results.filter((r) => r.handler !== result.handler);
  return {
    ...doc,
    canary: { ...doc.canary, results: [...others, result].sort((a, b) => (a.handler < b.handler ? -1 : 1)) },
  };
}
