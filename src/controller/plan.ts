// The pure core of the reconcile loop: observed state + the desired version in, the next steps out.
// No I/O here; test/unit/controller/plan.test.ts drives it with tables.
import type { ActivationPolicy } from "../config/schema.ts";
import type { Target } from "../model.ts";
import { compareVersions } from "../release/version.ts";
import { activeFile, type LinkState } from "../store/link.ts";

export interface StoreEntry {
  file: string;
  version: string;
  /** Whether the image's own extension-release matches the host the plan is for. */
  compatible: boolean;
}

export interface PlanInput {
  link: LinkState;
  store: StoreEntry[];
  /** The extension shows up in systemd-sysext's merged list. */
  merged: boolean;
  /** False where the merge of a linked image cannot be observed (--root with systemd-sysext 252). */
  mergeObservable: boolean;
  /** The version the policy wants now, or null when nothing acceptable exists. */
  target: Target | null;
  sandboxesRunning: number;
  activation: ActivationPolicy;
  /** How many images to keep besides the active and the previous one. */
  keep: number;
  previous: string | null;
  /** The image staged for the next OS release; kept like the active one. */
  staged: string | null;
  /** The image deferred to the next boot (policy.activation); kept like the active one. */
  deferred: string | null;
}

export type Action =
  | { kind: "download"; target: Target }
  | { kind: "switch"; to: string; from: string | null }
  | { kind: "remerge"; file: string }
  | { kind: "unlink"; reason: string }
  | { kind: "defer"; reason: string }
  | { kind: "prune"; files: string[] }
  /** The target is stored but cannot be linked here; the caller reports why, and no member of the set moves. */
  | { kind: "blocked"; reason: string };

/** The first thing to do next; the loop carries it out, observes again and asks again. */
export function nextAction(input: PlanInput): Action | null {
  const active = activeFile(input.link);
  const activeEntry = input.store.find((e) => e.file === active);
  const target = input.target;

  // An image file someone wrote where the link goes is never renamed over unverified: a pass with the network
  // takes it over first (takeover.ts); a pass without it (boot, rollback) leaves it.
  if (target !== null && input.link.kind === "foreign" && input.link.target === null) {
    return {
      kind: "blocked",
      reason: `${input.link.detail}: an image kata-sysextd did not put there is replaced only once SHA256SUMS vouches for it (the daemon's next pass), or move it away`,
    };
  }

  if (target !== null && target.file !== active) {
    const stored = input.store.find((e) => e.file === target.file);
    if (stored === undefined) return { kind: "download", target };
    if (!stored.compatible) return { kind: "blocked", reason: `${target.file} does not match this host` };
    const busy = sandboxesBlock(input);
    if (busy !== null) return busy;
    return { kind: "switch", to: target.file, from: active };
  }

  if (active !== null && activeEntry !== undefined && !activeEntry.compatible && target === null) {
    return { kind: "unlink", reason: `${active} does not match this host and no compatible image is available` };
  }

  if (active !== null && activeEntry !== undefined && input.mergeObservable && !input.merged) {
    const busy = sandboxesBlock(input);
    if (busy !== null) return busy;
    return { kind: "remerge", file: active };
  }

  const prunable = pruneCandidates(input, active);
  if (prunable.length > 0) return { kind: "prune", files: prunable };
  return null;
}

function sandboxesBlock(input: PlanInput): Action | null {
  if (input.sandboxesRunning === 0 || input.activation === "force") return null;
  const n = input.sandboxesRunning;
  const what = `${n} Kata sandbox${n === 1 ? "" : "es"} running`;
  return input.activation === "wait"
    ? { kind: "defer", reason: `${what}; waiting until none run (policy.activation = "wait")` }
    : {
        kind: "defer",
        reason: `${what}; the new image becomes active at the next boot (policy.activation = "next-boot")`,
      };
}

/**
 * The active, previous, staged and deferred images and the target stay, and the newest `keep` of the others;
 * everything else goes. An image made for another release of this OS counts against `keep` like any other: the
 * one a pending OS update needs is the staged one, and one pruned is not fetched again (its digest and release
 * are remembered, candidates.ts).
 */
export function pruneCandidates(
  input: Pick<PlanInput, "store" | "keep" | "previous" | "staged" | "deferred"> & { target?: Target | null },
  active: string | null,
): string[] {
  const spared = [active, input.previous, input.staged, input.deferred, input.target?.file ?? null];
  const protectedFiles = new Set(spared.filter((f): f is string => f !== null));
  const others = input.store.filter((e) => !protectedFiles.has(e.file));
  const byNewest = [...others].sort((a, b) => compareVersions(b.version, a.version));
  return byNewest.slice(input.keep).map((e) => e.file);
}

/** What the set as a whole does next: downloads first, then every member's switch together, then the rest. */
export type JointAction =
  | { kind: "download"; member: string; target: Target }
  | { kind: "switch"; changes: { member: string; to: string; from: string | null }[] }
  | { kind: "remerge"; member: string; file: string }
  | { kind: "unlink"; member: string; reason: string }
  | { kind: "defer"; reason: string }
  | { kind: "prune"; member: string; files: string[] };

/**
 * Combines each member's next action into one for the set: all images are fetched and inspected before any
 * link moves, and all links that move, move together (one merge), so no half-switched set is ever merged.
 */
export function nextJointAction(perMember: readonly { member: string; action: Action | null }[]): JointAction | null {
  const download = perMember.find((p) => p.action?.kind === "download");
  if (download?.action?.kind === "download") {
    return { kind: "download", member: download.member, target: download.action.target };
  }
  const deferred = perMember.find((p) => p.action?.kind === "defer");
  if (deferred?.action?.kind === "defer") return { kind: "defer", reason: deferred.action.reason };
  // One member that cannot take its target would leave the others switched to a set nobody chose.
  if (perMember.some((p) => p.action?.kind === "blocked")) return null;
  const changes = perMember.flatMap((p) =>
    p.action?.kind === "switch" ? [{ member: p.member, to: p.action.to, from: p.action.from }] : [],
  );
  if (changes.length > 0) return { kind: "switch", changes };
  for (const { member, action } of perMember) {
    if (action === null) continue;
    if (action.kind === "remerge") return { kind: "remerge", member, file: action.file };
    if (action.kind === "unlink") return { kind: "unlink", member, reason: action.reason };
    if (action.kind === "prune") return { kind: "prune", member, files: action.files };
  }
  return null;
}
