// Staging for the next boot: fetches, verifies and inspects the images a not-yet-booted Flatcar release needs,
// without activating them (the boot step links them once that release runs, before containerd starts).
import { KataError } from "../errors.ts";
import type { HostRelease } from "../release/os-release.ts";
import { acquireLock } from "../store/lock.ts";
import type { StoredImage } from "../store/store.ts";
import type { Actuator } from "./act.ts";
import { type PassDecisions, type SkippedByMember, skippedByMember } from "./decide.ts";
import type { ReconcilerDeps } from "./deps.ts";
import { judge, type Observed } from "./observe.ts";
import type { Records } from "./records.ts";

export interface StagingParts {
  actuator: Actuator;
  records: Records;
  observe: () => Promise<Observed>;
  decisions: () => Promise<PassDecisions>;
  /** Bounds the rounds: each failed candidate is one more, a publisher's list bounds them, this bounds a bug. */
  maxRounds: number;
}

export interface Staged {
  /** Kata first. */
  images: StoredImage[];
  skipped: SkippedByMember;
}

/**
 * The images `nextOs` needs, Kata first, with what was skipped; or throws with the reasons none is compatible.
 * A candidate that fails verification or inspection is remembered and skipped as in a pass (Records.blame), and
 * the next newest one for that release is tried. `record` runs while the store lock is still held: once it has
 * recorded them as the next boot's, no pass may prune them (a hand-run --once waits for the lock).
 */
export async function fetchForRelease(
  deps: Pick<ReconcilerDeps, "store" | "members" | "arch">,
  parts: StagingParts,
  nextOs: HostRelease,
  record: (staged: Staged) => Promise<void> = async () => {},
): Promise<Staged> {
  await deps.store.ensure();
  // The store lock, as for a pass: a hand-run --once must not sweep this download from under us.
  const lock = await acquireLock(deps.store.lockFile);
  try {
    const who = `staging for ${nextOs.id ?? "the OS"} ${nextOs.versionId ?? "?"}`;
    const decisions = await parts.decisions();
    for (let round = 0; round < parts.maxRounds; round++) {
      const { targets, candidates } = await decisions.remote(nextOs, await parts.observe());
      const images: StoredImage[] = [];
      let failed = false;
      for (const member of deps.members) {
        const target = targets.get(member.name);
        if (target === undefined || target === null) continue;
        try {
          await parts.actuator.download(member, target, nextOs);
        } catch (err) {
          await parts.records.blame(member.name, target, err, who);
          failed = true;
          break;
        }
        const stored = await deps.store.get(target.file);
        if (stored === null) throw new KataError("store-failed", `${target.file} vanished from the store`);
        // Stored, but made for yet another release (admit.ts): deciding again passes it over, as a pass does.
        if (judge([stored], nextOs, member.name, deps.arch)[0]?.compatible !== true) {
          failed = true;
          break;
        }
        images.push(stored);
      }
      if (failed) continue;
      if (images[0]?.name !== deps.members[0]?.name)
        throw new KataError("no-compatible-version", "no Kata version matches the next OS");
      const staged = { images, skipped: skippedByMember(candidates) };
      await record(staged);
      return staged;
    }
    throw new KataError("internal", `${who} gave up after too many failed candidates`);
  } finally {
    await lock.release();
  }
}
