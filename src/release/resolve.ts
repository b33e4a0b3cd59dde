// Which Kata version to run on a given host: the newest one that the operator's policy admits, that no
// Kata-to-Flatcar constraint rules out, and that the publisher has not withdrawn. Pure, so it answers for a host
// that is not booted yet (an update's new VERSION_ID) as well as for the running one.
//
// An image's own extension-release is only known after download, so resolve() decides on name, version,
// architecture, policy and constraints; whoever downloads the image checks it with compatible() afterwards.
// resolveOffline() is the boot path: it chooses among installed images whose extension-release is known.
import type { Range, SemVer } from "semver";
import type { Constraint } from "../config/schema.ts";
import { type CompatOptions, compatible } from "./compat.ts";
import { type ManifestEntry, type RejectedLine, summarizeRejected } from "./manifest.ts";
import type { ReleaseMetadata } from "./metadata.ts";
import { formatImageFileName, splitImageFileName } from "./names.ts";
import type { ExtensionRelease, HostRelease } from "./os-release.ts";
import { compareVersions, toRange, toRestrictingRange, toSemver } from "./version.ts";

export interface Policy {
  /** Semver range of acceptable Kata versions (policy.versions). */
  versions: string;
  constraints: Constraint[];
}

export interface ResolveInput {
  host: HostRelease;
  arch: string;
  name: string;
  manifest: ManifestEntry[];
  /** SHA256SUMS lines parseManifest refused: when nothing is on offer, they are likely why. */
  rejected?: readonly RejectedLine[];
  /** Versions already in the local store. */
  installed: string[];
  /**
   * What the caller left out of `manifest` and `installed` (failed before, held, made for another release of the
   * OS), counted, so an explanation does not call a listed or stored image absent; the caller names them.
   */
  withheld?: { listed: number; installed: number };
  policy: Policy;
  metadata?: ReleaseMetadata;
}

export type Resolution =
  | {
      ok: true;
      version: string;
      file: string;
      /** From SHA256SUMS; null for an installed image the manifest no longer lists. */
      sha256: string | null;
      source: "remote" | "installed";
      /** Newer versions that were passed over, each with why. */
      passedOver: string[];
    }
  | { ok: false; reasons: string[] };

export interface OfflineImage {
  version: string;
  /** The image's extension-release, or null when it has none for this name. */
  release: ExtensionRelease | null;
}

export interface ResolveOfflineInput {
  host: HostRelease;
  arch: string;
  name: string;
  images: OfflineImage[];
  policy: Policy;
  metadata?: ReleaseMetadata;
  compat?: Omit<CompatOptions, "name" | "arch">;
}

export type OfflineResolution =
  | { ok: true; version: string; source: "installed"; reasons: string[]; passedOver: string[] }
  | { ok: false; reasons: string[] };

/** How many rejected versions an explanation lists one by one. */
const EXPLAINED = 10;

interface Candidate {
  version: string;
  semver: SemVer;
}

export function resolve(input: ResolveInput): Resolution {
  const { host, arch, name } = input;
  const rules = policyRules(input.policy, host, input.metadata);
  if (!rules.ok) return { ok: false, reasons: [rules.reason] };

  const remote = new Map<string, ManifestEntry>();
  const otherArches = new Set<string>();
  for (const entry of input.manifest) {
    const parsed = splitImageFileName(entry.file, name);
    if (typeof parsed === "string") continue;
    if (parsed.arch === arch) remote.set(parsed.version, entry);
    else otherArches.add(parsed.arch);
  }
  // Store versions that cannot make a safe file name are ignored, as hostile manifest names are.
  const installed = new Map<string, string>();
  for (const version of input.installed) {
    const file = formatImageFileName({ name, version, arch });
    if (file.ok) installed.set(version, file.value);
  }
  const versions = new Set([...remote.keys(), ...installed.keys()]);
  if (versions.size === 0) {
    const elsewhere = otherArches.size > 0 ? ` (it has images for ${[...otherArches].sort().join(", ")})` : "";
    const rejected = summarizeRejected(input.rejected ?? []);
    const { listed, installed: stored } = input.withheld ?? { listed: 0, installed: 0 };
    const images = (n: number) => `${n} ${name} image${n === 1 ? "" : "s"}`;
    const lists =
      listed === 0
        ? `SHA256SUMS lists no ${name} image for ${arch}${elsewhere}`
        : `SHA256SUMS lists ${images(listed)} for ${arch}, none of which may be tried here`;
    const has = stored === 0 ? "none is installed" : `the ${images(stored)} installed may not be linked here`;
    return {
      ok: false,
      reasons: [`${lists}, and ${has}`, ...(rejected === null ? [] : [`SHA256SUMS: ${rejected}`])],
    };
  }

  const { candidates, unversioned } = rankNewestFirst(versions);
  const passedOver: string[] = [];
  for (const candidate of candidates) {
    const why = rules.reject(candidate);
    if (why.length > 0) {
      passedOver.push(`${candidate.version}: ${why.join("; ")}`);
      continue;
    }
    const entry = remote.get(candidate.version);
    return {
      ok: true,
      version: candidate.version,
      file: entry?.file ?? installed.get(candidate.version) ?? "",
      sha256: entry?.sha256 ?? null,
      source: installed.has(candidate.version) ? "installed" : "remote",
      passedOver: summarize(passedOver),
    };
  }
  return { ok: false, reasons: explain(name, arch, host, passedOver, unversioned) };
}

export function resolveOffline(input: ResolveOfflineInput): OfflineResolution {
  const { host, arch, name } = input;
  const rules = policyRules(input.policy, host, input.metadata);
  if (!rules.ok) return { ok: false, reasons: [rules.reason] };
  const releases = new Map<string, ExtensionRelease | null>();
  for (const image of input.images) releases.set(image.version, image.release);
  if (releases.size === 0) return { ok: false, reasons: [`no ${name} image is installed`] };

  const { candidates, unversioned } = rankNewestFirst(new Set(releases.keys()));
  const passedOver: string[] = [];
  for (const candidate of candidates) {
    const why = rules.reject(candidate);
    const decision = compatible(host, releases.get(candidate.version) ?? null, { ...input.compat, name, arch });
    if (!decision.compatible) why.push(...decision.reasons);
    if (why.length > 0) {
      passedOver.push(`${candidate.version}: ${why.join("; ")}`);
      continue;
    }
    return {
      ok: true,
      version: candidate.version,
      source: "installed",
      reasons: decision.reasons,
      passedOver: summarize(passedOver),
    };
  }
  return { ok: false, reasons: explain(name, arch, host, passedOver, unversioned) };
}

interface Rules {
  ok: true;
  /** Why policy rules this candidate out; empty when it is acceptable. */
  reject(candidate: Candidate): string[];
}

interface CompiledConstraint {
  kata: Range;
  flatcar: Range;
  why: string;
}

/** Policy range, constraints (operator's, then publisher's) and withdrawals, compiled once per resolution. */
function policyRules(
  policy: Policy,
  host: HostRelease,
  metadata?: ReleaseMetadata,
): Rules | { ok: false; reason: string } {
  const range = toRange(policy.versions);
  if (range === null) return { ok: false, reason: `policy.versions: "${policy.versions}" is not a semver range` };
  const flatcar = host.versionId === null ? null : toSemver(host.versionId);
  const hostVersion = host.versionId === null ? "host has no VERSION_ID" : `host VERSION_ID is ${host.versionId}`;

  const constraints: CompiledConstraint[] = [];
  const sources: [string, Constraint[]][] = [
    ["policy.constraints", policy.constraints],
    ["release metadata", metadata?.constraints ?? []],
  ];
  for (const [origin, list] of sources) {
    for (const c of list) {
      const kata = toRestrictingRange(c.kata);
      const needs = toRestrictingRange(c.flatcar);
      if (kata === null || needs === null) {
        return { ok: false, reason: `${origin}: constraint {kata: "${c.kata}", flatcar: "${c.flatcar}"} is not valid` };
      }
      constraints.push({
        kata,
        flatcar: needs,
        why: `${origin}: kata ${c.kata} needs flatcar ${c.flatcar}, ${hostVersion} (${c.reason})`,
      });
    }
  }
  const withdrawn = (metadata?.withdrawn ?? []).flatMap((w) => {
    const r = toRestrictingRange(w.kata);
    return r === null ? [] : [{ range: r, reason: w.reason }];
  });

  return {
    ok: true,
    reject(candidate) {
      const why: string[] = [];
      if (!range.test(candidate.semver)) why.push(`outside policy.versions "${policy.versions}"`);
      for (const w of withdrawn)
        if (w.range.test(candidate.semver)) why.push(`withdrawn by the publisher (${w.reason})`);
      for (const c of constraints) {
        // A host VERSION_ID that is not a version cannot satisfy any constraint: refuse rather than guess.
        if (c.kata.test(candidate.semver) && (flatcar === null || !c.flatcar.test(flatcar))) why.push(c.why);
      }
      return why;
    },
  };
}

/** Semver versions newest first (ties broken by systemd's order, then by text); the rest set aside. */
function rankNewestFirst(versions: Iterable<string>): { candidates: Candidate[]; unversioned: string[] } {
  const candidates: Candidate[] = [];
  const unversioned: string[] = [];
  for (const version of versions) {
    const parsed = toSemver(version);
    if (parsed === null) unversioned.push(version);
    else candidates.push({ version, semver: parsed });
  }
  candidates.sort(newestFirst);
  return { candidates, unversioned: unversioned.sort(compareVersions).reverse() };
}

function newestFirst(a: Candidate, b: Candidate): number {
  const x = a.semver;
  const y = b.semver;
  // Numbers first without semver's generic compare: this sort runs over whole manifests.
  return (
    y.major - x.major ||
    y.minor - x.minor ||
    y.patch - x.patch ||
    y.comparePre(x) ||
    compareVersions(b.version, a.version) ||
    (a.version < b.version ? 1 : a.version > b.version ? -1 : 0)
  );
}

function explain(name: string, arch: string, host: HostRelease, rejected: string[], unversioned: string[]): string[] {
  const on = `${host.id ?? "unknown OS"} ${host.versionId ?? "(no VERSION_ID)"}`;
  const reasons = [`no ${name} version for ${arch} is acceptable on ${on}`, ...summarize(rejected)];
  if (unversioned.length > 0) {
    const shown = unversioned.slice(0, EXPLAINED).join(", ");
    const more = unversioned.length > EXPLAINED ? ` and ${unversioned.length - EXPLAINED} more` : "";
    reasons.push(`not semver, so policy.versions cannot admit them: ${shown}${more}`);
  }
  return reasons;
}

function summarize(lines: string[]): string[] {
  if (lines.length <= EXPLAINED) return lines;
  return [...lines.slice(0, EXPLAINED), `… and ${lines.length - EXPLAINED} older versions rejected as well`];
}
