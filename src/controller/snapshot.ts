// Builds the /status document from what a pass observed. Pure: the daemon keeps the result in memory.

import type { HostRelease } from "../release/os-release.ts";
import {
  type CanaryStatus,
  type ContainerdRegistration,
  NO_REBOOT,
  type PreflightSummary,
  type RebootStatus,
  type StatusDocument,
} from "../status.ts";
import { activeFile } from "../store/link.ts";
import type { NextBoot, RebootRequest } from "../store/state.ts";
import { previousOf, stagedOf } from "./decisions.ts";
import { primaryOf } from "./observe.ts";
import type { PassOutcome } from "./reconciler.ts";
import { skippedReleases } from "./versions.ts";

export interface SnapshotInput {
  base: StatusDocument;
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
}): StatusDocument {
  return {
    daemon: { version: opts.version, startedAt: opts.startedAt, root: opts.root },
    host: {
      id: opts.host?.id ?? null,
      versionId: opts.host?.versionId ?? null,
      sysextLevel: opts.host?.sysextLevel ?? null,
      arch: opts.arch,
    },
    extension: {
      name: opts.name,
      active: null,
      previous: null,
      merged: false,
      image: null,
      trust: null,
      limitation: null,
    },
    nextBoot: null,
    reboot: NO_REBOOT,
    members: [{ name: opts.name, active: null, previous: null, nextBoot: null, merged: false, held: [] }],
    preflight: null,
    lastReconcile: null,
    download: null,
    stateDamage: null,
    skipped: [],
    canary: { handler: opts.canaryHandler ?? null, results: [] },
    containerd: null,
    // A daemon that has not concluded its first pass is still finding out.
    state: "resolving",
  };
}

/** What /status shows of the next boot state.json records. */
export function nextBootStatus(next: NextBoot | null): StatusDocument["nextBoot"] {
  if (next === null) return null;
  const { flatcarVersion, kata, staged, reason } = next;
  return { flatcarVersion, kata, staged, reason, skipped: skippedReleases(next.skipped) };
}

export function statusAfterPass({ base, outcome, at, preflight, containerd }: SnapshotInput): StatusDocument {
  const observed = outcome.observed;
  const kata = observed === null ? null : primaryOf(observed);
  const linked = kata === null ? null : activeFile(kata.link);
  const active = kata?.images.find((i) => i.file === linked) ?? null;
  const previous = kata?.images.find((i) => i.file === observed?.state.previous) ?? null;
  const next = observed?.state.nextBoot ?? null;
  const failedPreflight = preflight !== null && !preflight.ok;
  return {
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
    extension: {
      ...base.extension,
      active: active?.version ?? null,
      previous: previous?.version ?? null,
      merged: kata?.merged ?? false,
      image: active?.path ?? null,
      trust: active?.trust ?? null,
      limitation: outcome.unconfirmed,
    },
    nextBoot: nextBootStatus(next),
    reboot: outcome.reboot === undefined ? base.reboot : rebootStatus(outcome.reboot),
    members:
      observed === null
        ? base.members
        : observed.members.map((m, i) => {
            const linked = activeFile(m.link);
            const previousFile = previousOf(observed.state, m.name, i === 0);
            const nextFile = stagedOf(next, m.name, i === 0);
            const version = (file: string | null) => m.images.find((img) => img.file === file)?.version ?? null;
            return {
              name: m.name,
              active: version(linked),
              previous: version(previousFile),
              nextBoot: version(nextFile),
              merged: m.merged,
              held: (observed.state.held[m.name] ?? []).map((file) => version(file) ?? file),
            };
          }),
    preflight,
    lastReconcile: {
      at,
      result: outcome.result,
      error: outcome.error?.message ?? null,
      remedy: outcome.error?.remedy ?? null,
    },
    download: null,
    stateDamage: observed === null ? base.stateDamage : observed.stateDamage,
    skipped: observed === null ? base.skipped : skippedReleases(observed.state.skipped),
    state:
      outcome.result === "failed"
        ? active === null
          ? "error"
          : "degraded"
        : failedPreflight || observed?.stateDamage
          ? "degraded"
          : "idle",
  };
}

/** /status's reboot block for the request persisted in state.json. */
export function rebootStatus(request: RebootRequest | null): RebootStatus {
  return request === null
    ? NO_REBOOT
    : { requested: true, reason: request.reason, since: request.since, sentinel: request.sentinel };
}

/** The document with `result` as its handler's last canary (one entry per handler, the newest kept). */
export function withCanary(doc: StatusDocument, result: CanaryStatus): StatusDocument {
  const others = doc.canary.results.filter((r) => r.handler !== result.handler);
  return {
    ...doc,
    canary: { ...doc.canary, results: [...others, result].sort((a, b) => (a.handler < b.handler ? -1 : 1)) },
  };
}
