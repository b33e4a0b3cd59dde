// `kata-sysextctl versions`: what is stored and what the source publishes for Kata, each judged the way a pass
// would. Pure: catalog.ts reads the store and the manifest and hands them in.
import type { RemoteVersion } from "../api/schemas.ts";
import type { Config } from "../config/schema.ts";
import type { SkippedCandidate } from "../model.ts";
import type { ReleaseMetadata } from "../release/metadata.ts";
import { splitImageFileName } from "../release/names.ts";
import type { HostRelease } from "../release/os-release.ts";
import { resolve } from "../release/resolve.ts";
import { compareVersions } from "../release/version.ts";
import type { SkippedRelease } from "../status.ts";

export const HELD_REASON = "held: rolled back from; `kata-sysextctl refresh --release-holds` lifts the hold";

export interface RemoteInput {
  host: HostRelease;
  arch: string;
  policy: Pick<Config["policy"], "versions" | "constraints">;
  /** The member's name: only its own image files are versions of it. */
  name: string;
  entry: { file: string; sha256: string; line: number };
  metadata: ReleaseMetadata | undefined;
  /** Rolled back from: held. */
  held: boolean;
  /**
   * The same file in the store, judged for this host, if it is stored; or these bytes, fetched before as made for
   * another release of the OS and pruned since (`pruned`), judged from the extension-release remembered.
   */
  stored: { compatible: boolean; reasons: string[]; pruned?: boolean } | undefined;
}

/**
 * Would this one published image be chosen for this host and policy? The same resolve() the pass uses, then what
 * a pass would still skip (a hold, an image stored already as made for another release). Null for a line that
 * is not one of this member's images.
 */
export function judgeRemote(input: RemoteInput): RemoteVersion | null {
  const { held, stored } = input;
  const image = splitImageFileName(input.entry.file, input.name, input.arch);
  if (typeof image === "string") return null;
  const r = resolve({
    host: input.host,
    arch: input.arch,
    name: input.name,
    manifest: [input.entry],
    installed: [],
    policy: input.policy,
    metadata: input.metadata,
  });
  if (!r.ok) return { version: image.version, compatible: false, reason: r.reasons.join("; "), held };
  // A pass skips what a rollback holds, however compatible: say so rather than promise it.
  if (held) return { version: image.version, compatible: false, reason: HELD_REASON, held };
  // Fetched already and made for another release of the OS: a pass never links it here.
  if (stored !== undefined && !stored.compatible) {
    const how = stored.pruned === true ? "fetched before and pruned, not fetched again" : "stored, not linked here";
    const reason = `made for another release of the OS (${how}): ${stored.reasons.join("; ")}`;
    return { version: image.version, compatible: false, reason, held };
  }
  return { version: image.version, compatible: true, reason: null, held };
}

/** The skipped candidates state.json keeps by member, as /status and `versions` list them: newest first. */
export function skippedReleases(byMember: Record<string, SkippedCandidate[]>): SkippedRelease[] {
  return Object.entries(byMember)
    .flatMap(([member, list]) => list.map((c) => ({ member, ...c })))
    .sort((a, b) => compareVersions(b.version, a.version));
}
