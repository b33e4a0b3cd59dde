// What a pass wants active, per member: from the sources (the newest satisfiable set, with the publisher's
// metadata) or, without the network (boot, rollback), from the store and the metadata kept from last time.
import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import type { Config } from "../config/schema.ts";
import { KataError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { Member, OtherReleaseImage, PublishedManifest, SkippedCandidate, Targets } from "../model.ts";
import { compatible } from "../release/compat.ts";
import {
  type Manifest,
  parseManifest,
  type RejectedLine,
  summarizeRejected,
  unusableManifest,
} from "../release/manifest.ts";
import { METADATA_FILE, type PublishedRequirement, parseMetadata, type ReleaseMetadata } from "../release/metadata.ts";
import { splitImageFileName } from "../release/names.ts";
import { type HostRelease, parseExtensionRelease } from "../release/os-release.ts";
import { resolveOffline } from "../release/resolve.ts";
import { resolveSet } from "../release/set.ts";
import { writeFileAtomic } from "../store/fsutil.ts";
import { activeFile } from "../store/link.ts";
import type { ImageStore } from "../store/store.ts";
import { type CandidateChoice, candidateKey, chooseCandidates, type PublishedCandidate } from "./candidates.ts";
import { stagedOf } from "./decisions.ts";
import { type JudgedImage, judge, type Observed } from "./observe.ts";

export interface DecideContext {
  config: Config;
  arch: string;
  store: ImageStore;
  /** Kata first, then its companions. */
  members: Member[];
  log: Logger;
  /** When a remembered failure's retry is due is judged against this. */
  now: Date;
  /** Reads a member's published manifest; unset, straight from its source (PassDecisions reads each once). */
  manifest?: (member: Member) => Promise<PublishedManifest>;
}

/** Per member: the candidates left out because they failed before, and the failures still worth keeping. */
export type CandidateRecords = Map<
  string,
  Pick<CandidateChoice<PublishedCandidate>, "skipped" | "failures" | "otherRelease">
>;

/** What a decision left out, by member: as state.json keeps it (a pass's `skipped`, a next boot's). */
export type SkippedByMember = Record<string, SkippedCandidate[]>;

export function skippedByMember(records: CandidateRecords): SkippedByMember {
  return Object.fromEntries([...records].flatMap(([member, r]) => (r.skipped.length > 0 ? [[member, r.skipped]] : [])));
}

export function memberNamed(ctx: Pick<DecideContext, "members">, name: string): Member {
  const found = ctx.members.find((m) => m.name === name);
  if (found === undefined) throw new KataError("internal", `unknown member ${name}`);
  return found;
}

/** What one member's source publishes, as read for a decision: the manifest and which of its bytes are quarantined. */
export interface PublishedSource {
  member: Member;
  manifest: PublishedManifest;
  parsed: Manifest;
  /** candidateKey()s of the published images whose bytes failed inspection before. */
  quarantined: ReadonlySet<string>;
}

/**
 * Reads every member's manifest and picks the set: the newest Kata whose companions can all be satisfied. The
 * publisher's metadata.json is kept in the store for the decisions taken offline, and returned. The reading is
 * here; the choice is chooseTargets(), without I/O.
 */
export async function decideRemote(
  ctx: DecideContext,
  host: HostRelease,
  observed: Observed,
): Promise<{ targets: Targets; metadata: ReleaseMetadata | undefined; candidates: CandidateRecords }> {
  const sources = await Promise.all(ctx.members.map((member) => readPublished(ctx, member)));
  const primary = sources[0];
  if (primary === undefined) throw new KataError("internal", "no primary member");
  const metadata = await publishedOrKeptMetadata(ctx, primary.manifest);
  return { ...chooseTargets(ctx, host, observed, sources, metadata), metadata };
}

async function readPublished(ctx: DecideContext, member: Member): Promise<PublishedSource> {
  const manifest = await (ctx.manifest?.(member) ?? member.source.manifest());
  const parsed = parseManifest(manifest.text);
  logRejected(ctx.log, member.name, parsed.rejected);
  const unusable = unusableManifest(parsed, manifest.text, member.source.imageUrl("SHA256SUMS"));
  if (unusable !== null) throw unusable;
  // Quarantined: these very bytes failed inspection before (a republished file gets a fresh look).
  const bad = await Promise.all(parsed.entries.map((e) => ctx.store.isQuarantined(e.file, e.sha256)));
  const quarantined = new Set(parsed.entries.filter((_, i) => bad[i]).map((e) => candidateKey(e.file, e.sha256)));
  return { member, manifest, parsed, quarantined };
}

/** How many rejected SHA256SUMS lines a pass logs one by one; the rest are counted in one more line. */
const LOGGED_REJECTIONS = 3;

/** A few rejected lines, one warning each, then their count: an HTML page must not flood the journal. */
function logRejected(log: Logger, name: string, rejected: readonly RejectedLine[]): void {
  for (const r of rejected.slice(0, LOGGED_REJECTIONS)) {
    log.warning(`${name} SHA256SUMS line ${r.line} ignored: ${r.message}`);
  }
  if (rejected.length > LOGGED_REJECTIONS) {
    const rest = rejected.length - LOGGED_REJECTIONS;
    log.warning(`${name} SHA256SUMS: ${summarizeRejected(rejected)}; ${rest} more not logged one by one`);
  }
}

/**
 * The set a pass wants from what the sources publish (readPublished) and what is stored: the newest Kata whose
 * companions can all be satisfied, within policy and the publisher's metadata. Throws Unresolvable, with what was
 * skipped, when no set qualifies. No I/O.
 */
export function chooseTargets(
  ctx: Pick<DecideContext, "config" | "arch" | "members" | "log" | "now">,
  host: HostRelease,
  observed: Pick<Observed, "members" | "state">,
  sources: readonly PublishedSource[],
  metadata: ReleaseMetadata | undefined,
): { targets: Targets; candidates: CandidateRecords } {
  const { config, arch } = ctx;
  const published = sources.map(({ member, manifest, parsed, quarantined }) => {
    const view = observed.members.find((m) => m.name === member.name);
    // Stored images judged against the host this decision is for (the booted one, or an update's next
    // release): one made for another release is no candidate here, and is not fetched again either.
    const stored = judge(view?.images ?? [], host, member.name, arch);
    const otherRelease = madeElsewhere(host, member.name, arch, stored, observed.state.otherRelease[member.name] ?? []);
    const elsewhere = parsed.entries.flatMap((e) => {
      const found = otherRelease.elsewhere.find(
        (i) => i.file === e.file && (i.stored || candidateKey(i.file, i.sha256) === candidateKey(e.file, e.sha256)),
      );
      return found === undefined ? [] : [{ entry: e, found }];
    });
    // Held: rolled back from by the operator; skipped (a newer release is taken) until the config changes.
    const held = new Set(observed.state.held[member.name] ?? []);
    const choice = chooseCandidates({
      published: parsed.entries.map((e) => {
        const name = splitImageFileName(e.file, member.name, arch);
        return { ...e, version: typeof name === "string" ? e.file : name.version };
      }),
      failures: observed.state.failedCandidates[member.name] ?? [],
      quarantined,
      held,
      elsewhere: new Set(elsewhere.map(({ entry }) => candidateKey(entry.file, entry.sha256))),
      known: otherRelease.known,
      maxBytes: config.fetch.maxBytes,
      now: ctx.now,
    });
    const forArch = parsed.entries.filter((e) => typeof splitImageFileName(e.file, member.name, arch) !== "string");
    const installed = stored.filter((i) => i.compatible && !held.has(i.file)).map((i) => i.version);
    return {
      member,
      manifest,
      rejected: parsed.rejected,
      offersAny: forArch.length > 0,
      entries: choice.tryable.map(({ version: _, ...entry }) => entry),
      installed,
      // What SHA256SUMS lists for this architecture and the store holds, left out here: resolve() says so.
      withheld: {
        listed: forArch.filter((e) => !choice.tryable.some((t) => t.file === e.file)).length,
        installed: stored.length - installed.length,
      },
      // Published, and known as made for another release: named when nothing is left to choose.
      elsewhere: elsewhere.map(
        ({ found }) =>
          `${found.file} (${found.reasons.join("; ")}${found.stored ? "" : "; pruned, not fetched again"})`,
      ),
      choice,
    };
  });
  const [primary, ...companions] = published;
  if (primary === undefined) throw new KataError("internal", "no primary member");
  const resolution = resolveSet({
    primary: {
      host,
      arch,
      name: primary.member.name,
      manifest: primary.entries,
      rejected: primary.rejected,
      installed: primary.installed,
      withheld: primary.withheld,
      policy: { versions: config.policy.versions, constraints: config.policy.constraints },
      metadata,
    },
    companions: companions.map((c) => ({
      name: c.member.name,
      manifest: c.entries,
      installed: c.installed,
      versions: c.member.versions,
    })),
    requires: [
      ...config.policy.requires.map((r, i) => ({ ...r, origin: `policy.requires[${i}]` })),
      ...publishedRequirements(ctx, metadata).map((r) => ({ ...r, origin: "release metadata" })),
    ],
    kernel: { range: config.policy.kernel, shipped: metadata?.kernels ?? [] },
  });
  if (!resolution.ok) {
    // A manifest that offers nothing because its lines were refused is the publisher's to fix, not the policy's.
    const unreadable = published
      .map((p) => ({ name: p.member.name, why: p.offersAny ? null : summarizeRejected(p.rejected) }))
      .find((p) => p.why !== null);
    const skipped = published.flatMap((p) => p.choice.skipped.map((c) => `${c.file}: ${c.reason}`));
    const failedBefore = skipped.length === 0 ? "" : `; skipped after failing before: ${skipped.join("; ")}`;
    const forOthers = published.flatMap((p) => p.elsewhere);
    const forOtherReleases =
      forOthers.length === 0 ? "" : `; made for another release of the OS (not linked here): ${forOthers.join("; ")}`;
    // Skipped for being over [fetch] max_bytes: the setting may be what is wrong (raising it retries them at once).
    const overCap = published.some((p) =>
      p.choice.failures.some((f) => f.code === "fetch-too-large" && p.choice.skipped.some((c) => c.file === f.file)),
    );
    throw new Unresolvable(
      `no acceptable Kata version: ${resolution.reasons.join("; ")}${failedBefore}${forOtherReleases}`,
      unreadable !== undefined
        ? `the publisher must fix ${unreadable.name}'s SHA256SUMS (${unreadable.why})`
        : overCap
          ? "raise [fetch] max_bytes if the releases really are that large: those over it are tried again at once"
          : "check [policy] versions and constraints against what the source publishes (`kata-sysextctl versions`)",
      candidateRecords(published),
    );
  }
  const targets: Targets = new Map();
  for (const chosen of resolution.members) {
    const member = memberNamed(ctx, chosen.name);
    const view = observed.members.find((m) => m.name === chosen.name);
    const stored = view?.images.some((i) => i.file === chosen.file) ?? false;
    if (!stored && chosen.sha256 === null) {
      throw new KataError("manifest-invalid", `${chosen.file} is not listed in SHA256SUMS and not in the store`);
    }
    targets.set(chosen.name, {
      version: chosen.version,
      file: chosen.file,
      remote:
        stored || chosen.sha256 === null ? null : { url: member.source.imageUrl(chosen.file), sha256: chosen.sha256 },
    });
  }
  return { targets, candidates: candidateRecords(published) };
}

function candidateRecords(published: { member: Member; choice: CandidateChoice<PublishedCandidate> }[]) {
  const records: CandidateRecords = new Map();
  for (const { member, choice } of published) {
    records.set(member.name, { skipped: choice.skipped, failures: choice.failures, otherRelease: choice.otherRelease });
  }
  return records;
}

/**
 * The images known to be made for another release of this OS (stored ones that do not match `host`, and those
 * remembered in state.json), and which of them cannot merge on `host`: the stored ones by file, the remembered
 * ones (pruned since) by digest, judged again from their extension-release.
 */
export function madeElsewhere(
  host: HostRelease,
  name: string,
  arch: string,
  stored: JudgedImage[],
  remembered: OtherReleaseImage[],
): {
  known: OtherReleaseImage[];
  elsewhere: { file: string; sha256: string; reasons: string[]; stored: boolean }[];
} {
  const incompatible = stored.filter((i) => !i.compatible);
  const fromStore = incompatible.map((i) => ({
    file: i.file,
    version: i.version,
    sha256: i.sha256.toLowerCase(),
    extensionRelease: i.extensionRelease,
  }));
  const isStored = (r: OtherReleaseImage) => stored.some((i) => i.file === r.file);
  const elsewhere = [
    ...incompatible.map((i) => ({ ...i, stored: true })),
    ...remembered
      .filter((r) => !isStored(r))
      .flatMap((r) => {
        const decision = compatible(host, parseExtensionRelease(r.extensionRelease), { name, arch });
        return decision.compatible ? [] : [{ ...r, reasons: decision.reasons, stored: false }];
      }),
  ].map(({ file, sha256, reasons, stored }) => ({ file, sha256, reasons, stored }));
  const key = (i: { file: string; sha256: string }) => candidateKey(i.file, i.sha256);
  const known = [...fromStore, ...remembered.filter((r) => !fromStore.some((f) => key(f) === key(r)))];
  return { known, elsewhere };
}

/** No set can be chosen; it still carries what was skipped, so the pass records that too (/status). */
export class Unresolvable extends KataError {
  readonly candidates: CandidateRecords;
  constructor(message: string, remedy: string, candidates: CandidateRecords) {
    super("no-compatible-version", message, { remedy });
    this.candidates = candidates;
  }
}

/**
 * The publisher's metadata.json, kept in the store for the decisions taken offline (boot, rollback) and forgotten
 * when the publisher dropped it. When it could not be fetched, the pass goes on with the copy kept from last time
 * (or none), with a warning, unless policy.kernel needs it: only the metadata says which kernel a release ships.
 */
async function publishedOrKeptMetadata(ctx: DecideContext, manifest: PublishedManifest) {
  if (manifest.metadataUnavailable !== null) {
    if (ctx.config.policy.kernel !== null) {
      throw new KataError(
        "fetch-failed",
        `policy.kernel = "${ctx.config.policy.kernel}" needs ${METADATA_FILE}, which could not be fetched: ${manifest.metadataUnavailable}`,
        { remedy: `the pass is retried; ${METADATA_FILE} says which guest kernel each release ships` },
      );
    }
    const kept = await readKeptMetadata(ctx.store);
    ctx.log.warning(
      `${METADATA_FILE} could not be fetched (${manifest.metadataUnavailable}); going on with ${kept === undefined ? "none" : "the copy fetched last time"}`,
    );
    return kept;
  }
  const metadata = parsePublishedMetadata(manifest.metadata, ctx.log);
  if (manifest.metadata === null) await rm(ctx.store.metadataFile, { force: true });
  else await writeFileAtomic(ctx.store.metadataFile, manifest.metadata);
  return metadata;
}

/**
 * The publisher's requirements on companions this host runs. One on a companion the operator did not configure
 * does not apply here (Kata uses what its own image ships); it is said, not treated as unsatisfiable.
 */
function publishedRequirements(ctx: Pick<DecideContext, "config" | "log">, metadata: ReleaseMetadata | undefined) {
  const configured = new Set(ctx.config.companions.map((c) => c.name));
  const [apply, skip] = [[], []] as [PublishedRequirement[], PublishedRequirement[]];
  for (const r of metadata?.requires ?? []) (configured.has(r.companion) ? apply : skip).push(r);
  for (const r of skip) {
    ctx.log.info(
      `${METADATA_FILE}: requirement of Kata ${r.kata} on ${r.companion} skipped: not a configured companion`,
    );
  }
  return apply;
}

/**
 * A metadata file that cannot be read fully fails the pass: a half-understood withdrawal or constraint must
 * never widen what gets installed. No file at all means no metadata.
 */
export function parsePublishedMetadata(text: string | null, log: Logger): ReleaseMetadata | undefined {
  if (text === null) return undefined;
  const parsed = parseMetadata(text, `the source's ${METADATA_FILE}`);
  if (!parsed.ok) throw parsed.error;
  for (const problem of parsed.value.problems) log.warning(`${METADATA_FILE}: ${problem}`);
  return parsed.value;
}

/** Which of a member's stored images may be active on `host` without the network: compatible and within policy. */
export function qualifies(
  ctx: DecideContext,
  member: Member,
  host: HostRelease,
  images: JudgedImage[],
  metadata: ReleaseMetadata | undefined,
) {
  const { config, arch } = ctx;
  return resolveOffline({
    host,
    arch,
    name: member.name,
    images: images.map((i) => ({ version: i.version, release: parseExtensionRelease(i.extensionRelease) })),
    policy: member.primary
      ? { versions: config.policy.versions, constraints: config.policy.constraints }
      : { versions: member.versions, constraints: [] },
    metadata: member.primary ? metadata : undefined,
  });
}

/** The metadata.json a previous pass fetched; a file that no longer parses counts as none (it was valid). */
export async function readKeptMetadata(store: ImageStore): Promise<ReleaseMetadata | undefined> {
  let text: string | null;
  try {
    text = readFileSync(store.metadataFile, "utf8"); // our own copy, in the store: src/files.ts says why directly
  } catch {
    text = null;
  }
  if (text === null) return undefined;
  const parsed = parseMetadata(text, store.metadataFile);
  return parsed.ok ? parsed.value : undefined;
}

/**
 * Offline choice at boot, per member: the image staged for this release if it qualifies, else the active one if
 * it still does, else the newest stored image that does. For Kata "qualifies" is resolveOffline (compatible
 * and within policy); for a companion, compatible and within its own range.
 */
export function decideOffline(ctx: DecideContext, observed: Observed, metadata: ReleaseMetadata | undefined): Targets {
  const staged = observed.state.nextBoot;
  const bootedStaged = staged !== null && staged.flatcarVersion === observed.host.versionId ? staged : null;
  const targets: Targets = new Map();
  for (const view of observed.members) {
    const member = memberNamed(ctx, view.name);
    const ok = (images: JudgedImage[]) => qualifies(ctx, member, observed.host, images, metadata);
    const stagedFile = stagedOf(bootedStaged, member.name);
    const active = activeFile(view.link);
    let chosen: JudgedImage | undefined;
    const deferred = observed.state.deferred[member.name] ?? null;
    for (const file of [stagedFile, deferred, active]) {
      const image = view.images.find((i) => i.file === file);
      if (image !== undefined && ok([image]).ok) {
        chosen = image;
        break;
      }
    }
    if (chosen === undefined) {
      // Not one the operator rolled back from (held), as the passes with the network skip them too.
      const held = new Set(observed.state.held[member.name] ?? []);
      const candidates = view.images.filter((i) => !held.has(i.file));
      const newest = ok(candidates);
      chosen = newest.ok ? candidates.find((i) => i.version === newest.version) : undefined;
      if (!newest.ok) {
        ctx.log.notice(`no stored ${member.name} image qualifies for this host: ${newest.reasons.join("; ")}`);
      }
    }
    targets.set(
      member.name,
      chosen === undefined ? null : { version: chosen.version, file: chosen.file, remote: null },
    );
  }
  return targets;
}

/**
 * The decisions of one pass, or of one staging for a next release: each source's manifest is read once however
 * often the pass decides again after a failed candidate (its quarantine is looked up afresh each time), and the
 * publisher's metadata, as last fetched or as fetched now, serves the decisions taken without the network.
 */
export class PassDecisions {
  private metadata: ReleaseMetadata | undefined;
  private readonly manifests = new Map<string, Promise<PublishedManifest>>();
  private readonly context: () => Omit<DecideContext, "manifest">;

  private constructor(context: () => Omit<DecideContext, "manifest">, metadata: ReleaseMetadata | undefined) {
    this.context = context;
    this.metadata = metadata;
  }

  /** Starts with the metadata.json a previous pass kept in the store. */
  static async begin(context: () => Omit<DecideContext, "manifest">): Promise<PassDecisions> {
    return new PassDecisions(context, await readKeptMetadata(context().store));
  }

  private get ctx(): DecideContext {
    return { ...this.context(), manifest: (member) => this.manifestOf(member) };
  }

  private manifestOf(member: Member): Promise<PublishedManifest> {
    let read = this.manifests.get(member.name);
    if (read === undefined) {
      read = member.source.manifest();
      // A failed read is not kept: the next decision asks the source again.
      read.catch(() => this.manifests.delete(member.name));
      this.manifests.set(member.name, read);
    }
    return read;
  }

  /** From the sources (decideRemote); keeps their metadata for the offline decisions that follow. */
  async remote(host: HostRelease, observed: Observed) {
    const decided = await decideRemote(this.ctx, host, observed);
    this.metadata = decided.metadata;
    return decided;
  }

  /** From the store alone (decideOffline). */
  offline(observed: Observed): Targets {
    return decideOffline(this.ctx, observed, this.metadata);
  }

  /** Whether stored images may be active on `host` without the network (qualifies). */
  qualifies(member: Member, host: HostRelease, images: JudgedImage[]) {
    return qualifies(this.ctx, member, host, images, this.metadata);
  }
}
