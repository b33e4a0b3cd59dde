// The decisions a pass takes around the planner, as pure functions over plain data: what a rollback goes back
// to, which images are held after it or after a failed switch, what state.json records of a switch, and what is
// deferred to the next boot. No I/O here; test/unit/controller/decisions.test.ts drives each with a table.
import { KataError } from "../errors.ts";
import type { Target, Targets } from "../model.ts";
import { splitImageFileName } from "../release/names.ts";
import type { NextBoot, PersistedState } from "../store/state.ts";

/** One link moving: to a stored image, from the one it named (null: none). A re-merge has `to` equal to `from`. */
export interface LinkMove {
  member: string;
  to: string;
  from: string | null;
}

/** The changes of a switch that move a link (a re-merge of the active image moves nothing). */
export function moving<T extends LinkMove>(changes: readonly T[]): T[] {
  return changes.filter((c) => c.to !== c.from);
}

/** The image a member had before the last switch that moved it, as state.json remembers it; null when none. */
export function previousOf(state: Pick<PersistedState, "previous">, member: string): string | null {
  return Object.hasOwn(state.previous, member) ? (state.previous[member] ?? null) : null;
}

/** The image staged for a member with the next boot's OS release, or null. */
export function stagedOf(nextBoot: Pick<NextBoot, "files"> | null, member: string): string | null {
  return nextBoot !== null && Object.hasOwn(nextBoot.files, member) ? (nextBoot.files[member] ?? null) : null;
}

/**
 * The version of the image staged for a member, read off its store file name (`<name>-<version>-<arch>.raw`, as
 * every stored image is named), or null when none is staged.
 */
export function stagedVersion(nextBoot: Pick<NextBoot, "files"> | null, member: string): string | null {
  const file = stagedOf(nextBoot, member);
  const image = file === null ? null : splitImageFileName(file, member);
  return image === null || typeof image === "string" ? null : image.version;
}

/** What a rollback decision sees of one member. */
export interface RollbackMember {
  name: string;
  /** The store file the link names now, or null. */
  active: string | null;
  /** The image before the last switch (previousOf), or null. */
  previous: string | null;
  /** The member's stored images. */
  images: readonly { file: string; version: string }[];
  /** Why `previous` may not be active on this host (the boot path's verdict), or null when it may. */
  previousRefused: string[] | null;
}

export type RollbackDecision = { ok: true; targets: Targets } | { ok: false; error: KataError };

const VERSIONS_HINT = "`kata-sysextctl versions` lists the images in the store";

/**
 * Undoes the last switch: every member it moved goes back to its previous image; members it did not move stay
 * on what is active. `lastSwitch` null (a state file from before it was kept) counts every member as moved.
 * Refused, with nothing changed, when a previous image is gone or does not qualify, or nothing would move.
 */
export function rollbackTargets(
  members: readonly RollbackMember[],
  lastSwitch: readonly string[] | null,
): RollbackDecision {
  const targets: Targets = new Map();
  let moves = 0;
  for (const member of members) {
    const previous = lastSwitch !== null && !lastSwitch.includes(member.name) ? null : member.previous;
    if (previous === null || previous === member.active) {
      const image = member.images.find((i) => i.file === member.active);
      targets.set(member.name, image === undefined ? null : stored(image));
      continue;
    }
    const image = member.images.find((i) => i.file === previous);
    if (image === undefined) {
      const error = new KataError("rollback-refused", `previous image ${previous} is no longer in the store`, {
        remedy: VERSIONS_HINT,
      });
      return { ok: false, error };
    }
    if (member.previousRefused !== null) {
      const why = member.previousRefused.join("; ");
      const error = new KataError(
        "incompatible",
        `previous image ${image.file} does not qualify for this host: ${why}`,
      );
      return { ok: false, error };
    }
    targets.set(member.name, stored(image));
    moves += 1;
  }
  if (moves === 0) {
    return {
      ok: false,
      error: new KataError("rollback-refused", "no previous image to roll back to", { remedy: VERSIONS_HINT }),
    };
  }
  return { ok: true, targets };
}

function stored(image: { file: string; version: string }): Target {
  return { version: image.version, file: image.file, remote: null };
}

/** Images per member name. */
export type FilesByMember = Record<string, string[]>;

/**
 * The holds after adding `add` and lifting `release`: per member, in the order first held, without repeats;
 * members left with nothing are dropped.
 */
export function mergeHolds(held: FilesByMember, add: FilesByMember, release: FilesByMember = {}): FilesByMember {
  const merged: FilesByMember = {};
  for (const member of new Set([...Object.keys(held), ...Object.keys(add)])) {
    const lifted = new Set(release[member] ?? []);
    const list = [...new Set([...(held[member] ?? []), ...(add[member] ?? [])])].filter((f) => !lifted.has(f));
    if (list.length > 0) merged[member] = list;
  }
  return merged;
}

/**
 * After a rollback: the images rolled back from are held (later passes skip them), and the ones rolled back to
 * are released (the operator chose them). `before` is what each member's link named when the rollback started.
 */
export function holdsAfterRollback(
  before: ReadonlyMap<string, string>,
  after: readonly { name: string; active: string | null }[],
): { hold: FilesByMember; release: FilesByMember } {
  const hold: FilesByMember = {};
  const release: FilesByMember = {};
  for (const member of after) {
    const was = before.get(member.name);
    if (was === undefined || was === member.active) continue;
    hold[member.name] = [was];
    if (member.active !== null) release[member.name] = [member.active];
  }
  return { hold, release };
}

/** After a switch that was refused or undone: the images it was moving to are held, so no pass retries them. */
export function holdsAfterFailedSwitch(changes: readonly LinkMove[]): FilesByMember {
  return Object.fromEntries(moving(changes).map((c) => [c.member, [c.to]]));
}

/**
 * What state.json keeps of a switch that completed: each member's image from before it (the rollback target),
 * and which members it moved (what a rollback undoes; a re-merge moves nobody). A switch that moved a member ends
 * any wait for sandboxes: what was waited for is active, and a later deferral waits max_wait_seconds of its own.
 */
export function switchRecord(
  state: Pick<PersistedState, "previous" | "waitingSince">,
  changes: readonly LinkMove[],
): Pick<PersistedState, "previous" | "lastSwitch" | "waitingSince"> {
  const previous = { ...state.previous };
  for (const change of changes) previous[change.member] = change.from;
  const moved = moving(changes).map((c) => c.member);
  return { previous, lastSwitch: moved, waitingSince: moved.length > 0 ? null : state.waitingSince };
}

/** What a deferral decision sees of one member. */
export interface DeferralMember {
  name: string;
  primary: boolean;
  active: string | null;
  /** Files of the member's stored images. */
  stored: readonly string[];
}

/**
 * Activation deferred under running sandboxes: the stored targets that are not active yet, which the boot step
 * links instead (before containerd, so before any sandbox), and the same as versions for the reboot decision.
 */
export function deferredTargets(
  members: readonly DeferralMember[],
  targets: Targets,
): { deferred: Record<string, string>; heldBack: { member: string; version: string; primary: boolean }[] } {
  const deferred: Record<string, string> = {};
  const heldBack: { member: string; version: string; primary: boolean }[] = [];
  for (const member of members) {
    const target = targets.get(member.name);
    if (target && target.file !== member.active && member.stored.includes(target.file)) {
      deferred[member.name] = target.file;
      heldBack.push({ member: member.name, version: target.version, primary: member.primary });
    }
  }
  return { deferred, heldBack };
}
