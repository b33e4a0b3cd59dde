// How a pass ends, judged from what it observed last: whether every member is where the decision wanted it, and
// which newer releases it passed over on the way. Pure; test/unit/controller/verdict.test.ts holds the table.
import { KataError } from "../errors.ts";
import type { SkippedCandidate, Target } from "../model.ts";
import { compareVersions } from "../release/version.ts";
import { activeFile, type LinkState } from "../store/link.ts";

export interface VerdictMember {
  name: string;
  primary: boolean;
  /** Where its link lives, for the remedy. */
  linkPath: string;
  link: LinkState;
  /** What the pass wanted active; null when nothing qualifies. */
  target: Target | null;
  /** The target's published bytes failed inspection and were quarantined. */
  targetQuarantined: boolean;
}

/**
 * Null when the pass reached its goal, else the error that says what is missing. `requireActive`: a pass with the
 * network (or a rollback) must leave Kata active; one at boot may leave it unlinked when nothing stored qualifies.
 */
export function passVerdict(members: readonly VerdictMember[], requireActive: boolean): KataError | null {
  for (const member of members) {
    const active = activeFile(member.link);
    if (member.link.kind === "foreign") {
      return new KataError("activation-failed", member.link.detail, {
        remedy:
          member.link.target === null
            ? `a pass with the network takes the image over once SHA256SUMS vouches for it (kata-sysextctl refresh); or move ${member.linkPath} away`
            : `remove ${member.linkPath} (kata-sysextd manages it) and run the pass again`,
      });
    }
    const target = member.target;
    if (target === null) {
      if (member.primary && active === null && requireActive) {
        return new KataError("no-compatible-version", "no compatible Kata image is available for this host");
      }
      continue;
    }
    if (active !== target.file) {
      return new KataError(
        member.targetQuarantined ? "inspect-failed" : "activation-failed",
        `${target.file} is not active${member.targetQuarantined ? " (it failed inspection and was quarantined)" : ""}`,
      );
    }
  }
  return null;
}

/** The releases skipped that are newer than the active version (all of them when none is active), newest first. */
export function skippedNewer(active: string | null, skipped: readonly SkippedCandidate[]): SkippedCandidate[] {
  return skipped
    .filter((s) => active === null || compareVersions(s.version, active) > 0)
    .sort((a, b) => compareVersions(b.version, a.version));
}
