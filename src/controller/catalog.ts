// `kata-sysextctl versions`: reads the store and the source's manifest, and hands them to versions.ts's pure
// judgement. Source trouble is part of the answer (remoteError), not a failure of the query.
import type { VersionsResult } from "../api/schemas.ts";
import { asKataError } from "../errors.ts";
import { sourceDirectory } from "../fetch/source.ts";
import { parseManifest, unusableManifest } from "../release/manifest.ts";
import { activeFile } from "../store/link.ts";
import { candidateKey } from "./candidates.ts";
import { madeElsewhere, parsePublishedMetadata } from "./decide.ts";
import type { ReconcilerDeps } from "./deps.ts";
import { type Observed, primaryOf } from "./observe.ts";
import { judgeRemote, skippedReleases } from "./versions.ts";

export type CatalogDeps = Pick<ReconcilerDeps, "config" | "arch" | "log" | "members">;

/** Stored and published Kata versions, judged as a pass would judge them for the host `observed` saw. */
export async function listVersions(deps: CatalogDeps, observed: Observed): Promise<VersionsResult> {
  const kata = primaryOf(observed);
  const active = activeFile(kata.link);
  const held = observed.state.held[deps.config.source.name] ?? [];
  const result: VersionsResult = {
    name: deps.config.source.name,
    arch: deps.arch,
    active: kata.images.find((i) => i.file === active)?.version ?? null,
    source: sourceDirectory(deps.config.source),
    local: kata.images.map((i) => ({
      version: i.version,
      image: i.path,
      active: i.file === active,
      held: held.includes(i.file),
    })),
    remote: [],
    remoteError: null,
    skipped: skippedReleases(observed.state.skipped),
  };
  const primary = deps.members[0];
  if (primary === undefined) return result;
  try {
    const published = await primary.source.manifest();
    const manifest = parseManifest(published.text);
    // Junk (an HTML page at a wrong url) is an error to show, as a pass fails on it, not an empty list.
    const unusable = unusableManifest(manifest, published.text, primary.source.imageUrl("SHA256SUMS"));
    if (unusable !== null) throw unusable;
    // Withdrawals and constraints from the publisher count here as they do in a pass.
    const metadata = parsePublishedMetadata(published.metadata, deps.log);
    const name = deps.config.source.name;
    const remembered = observed.state.otherRelease[name] ?? [];
    const { elsewhere } = madeElsewhere(observed.host, name, deps.arch, kata.images, remembered);
    result.remote = manifest.entries.flatMap((entry) => {
      const key = candidateKey(entry.file, entry.sha256);
      const pruned = elsewhere.find((i) => !i.stored && candidateKey(i.file, i.sha256) === key);
      const stored =
        kata.images.find((i) => i.file === entry.file) ??
        (pruned === undefined ? undefined : { compatible: false, reasons: pruned.reasons, pruned: true });
      const decision = judgeRemote({
        host: observed.host,
        arch: deps.arch,
        policy: deps.config.policy,
        name: deps.config.source.name,
        entry,
        metadata,
        held: held.includes(entry.file),
        stored,
      });
      return decision === null ? [] : [decision];
    });
  } catch (err) {
    const e = asKataError(err);
    result.remoteError = { code: e.code, message: e.message, remedy: e.remedy ?? null };
  }
  return result;
}
