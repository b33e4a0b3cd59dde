// Choosing Kata together with its companion extensions (e.g. a separate cloud-hypervisor sysext): the newest
// Kata that is acceptable on its own (resolve()) and for which every companion has a published version meeting
// every requirement that Kata release places on it. Pure, like resolve(); a failure says which requirement
// could not be met, with what was available.
import type { ManifestEntry } from "./manifest.ts";
import { splitImageFileName } from "./names.ts";
import { type ResolveInput, resolve } from "./resolve.ts";
import { satisfies, toRange, toRestrictingRange, toSemver } from "./version.ts";

/** "kata releases in `kata` need `companion` versions in `versions`", from the config or the publisher. */
export interface Requirement {
  kata: string;
  companion: string;
  versions: string;
  reason: string;
  /** Where it came from, for explanations: "policy.requires[0]", "release metadata". */
  origin: string;
}

export interface CompanionInput {
  name: string;
  manifest: ManifestEntry[];
  /** Versions of this companion already in the store. */
  installed: string[];
  /** The companion's own acceptable range (its `versions` key). */
  versions: string;
}

export interface KernelPolicy {
  /** Acceptable guest kernel versions (semver range), or null when the operator does not care. */
  range: string | null;
  /** The guest kernel Kata releases ship, as published in the release metadata. */
  shipped: { kata: string; kernel: string }[];
}

export interface SetInput {
  primary: ResolveInput;
  companions: CompanionInput[];
  requires: Requirement[];
  kernel: KernelPolicy;
}

export interface ChosenMember {
  name: string;
  version: string;
  file: string;
  /** From SHA256SUMS; null when only the store has it. */
  sha256: string | null;
}

export type SetResolution = { ok: true; members: ChosenMember[] } | { ok: false; reasons: string[] };

/** How many Kata releases a failure explains one by one. */
const EXPLAINED = 5;

interface Available {
  version: string;
  file: string;
  sha256: string | null;
}

/** Every version of one member on offer for this architecture: published or stored, newest first. */
function available(name: string, arch: string, manifest: ManifestEntry[], installed: string[]): Available[] {
  const byVersion = new Map<string, Available>();
  for (const entry of manifest) {
    const parsed = splitImageFileName(entry.file, name);
    if (typeof parsed !== "string" && parsed.arch === arch) {
      byVersion.set(parsed.version, { version: parsed.version, file: entry.file, sha256: entry.sha256 });
    }
  }
  for (const version of installed) {
    if (!byVersion.has(version))
      byVersion.set(version, { version, file: `${name}-${version}-${arch}.raw`, sha256: null });
  }
  return [...byVersion.values()]
    .filter((a) => toSemver(a.version) !== null)
    .sort((a, b) => {
      const x = toSemver(a.version);
      const y = toSemver(b.version);
      return x === null || y === null ? 0 : y.compare(x);
    });
}

export function resolveSet(input: SetInput): SetResolution {
  const { primary } = input;
  if (input.companions.length === 0 && input.kernel.range === null) {
    const single = resolve(primary);
    return single.ok
      ? {
          ok: true,
          members: [{ name: primary.name, version: single.version, file: single.file, sha256: single.sha256 }],
        }
      : single;
  }
  const kernelRange = input.kernel.range === null ? null : toRange(input.kernel.range);
  if (input.kernel.range !== null && kernelRange === null) {
    return { ok: false, reasons: [`policy.kernel: "${input.kernel.range}" is not a semver range`] };
  }
  const unknown = input.requires.filter((r) => !input.companions.some((c) => c.name === r.companion));
  if (unknown.length > 0) {
    return {
      ok: false,
      reasons: unknown.map((r) => `${r.origin}: requirement on "${r.companion}", which is not a configured companion`),
    };
  }

  const companions = input.companions.map((c) => ({
    ...c,
    range: toRange(c.versions),
    offers: available(c.name, primary.arch, c.manifest, c.installed),
  }));
  const badRange = companions.find((c) => c.range === null);
  if (badRange !== undefined) {
    return {
      ok: false,
      reasons: [`companion ${badRange.name}: versions "${badRange.versions}" is not a semver range`],
    };
  }

  const rejected: string[] = [];
  let anyKata = false;
  for (const kata of available(primary.name, primary.arch, primary.manifest, primary.installed)) {
    // Acceptable on its own: policy range, host constraints, withdrawals, exactly as for a single extension.
    const alone = resolve({
      ...primary,
      manifest: kata.sha256 === null ? [] : primary.manifest.filter((e) => e.file === kata.file),
      installed: kata.sha256 === null ? [kata.version] : [],
    });
    if (!alone.ok) continue;
    anyKata = true;
    const why: string[] = [];
    if (kernelRange !== null) {
      const shipped = input.kernel.shipped.find((k) =>
        satisfies(kata.version, toRestrictingRange(k.kata) ?? neverRange()),
      )?.kernel;
      if (shipped === undefined)
        why.push(`its guest kernel is not published, and policy.kernel is "${input.kernel.range}"`);
      else if (!satisfies(shipped, kernelRange)) {
        why.push(`ships guest kernel ${shipped}, outside policy.kernel "${input.kernel.range}"`);
      }
    }
    const members: ChosenMember[] = [
      { name: primary.name, version: kata.version, file: kata.file, sha256: kata.sha256 },
    ];
    for (const companion of companions) {
      const rules = input.requires.filter(
        (r) => r.companion === companion.name && satisfies(kata.version, toRestrictingRange(r.kata) ?? neverRange()),
      );
      const pick = companion.offers.find(
        (offer) =>
          (companion.range === null || satisfies(offer.version, companion.range)) &&
          rules.every((r) => satisfies(offer.version, toRestrictingRange(r.versions) ?? neverRange())),
      );
      if (pick === undefined) {
        const wanted = [
          `${companion.name} versions "${companion.versions}"`,
          ...rules.map((r) => `"${r.versions}" (${r.origin}: ${r.reason})`),
        ].join(" and ");
        const offered = companion.offers.map((o) => o.version).join(", ") || "none";
        why.push(`needs ${wanted}; available: ${offered}`);
      } else {
        members.push({ name: companion.name, version: pick.version, file: pick.file, sha256: pick.sha256 });
      }
    }
    if (why.length === 0) return { ok: true, members };
    rejected.push(`${primary.name} ${kata.version}: ${why.join("; ")}`);
  }
  if (!anyKata) {
    const single = resolve(primary);
    return single.ok ? { ok: false, reasons: ["internal: no candidate"] } : single;
  }
  const shown = rejected.slice(0, EXPLAINED);
  if (rejected.length > EXPLAINED)
    shown.push(`… and ${rejected.length - EXPLAINED} older releases for the same reasons`);
  return { ok: false, reasons: [`no ${primary.name} release has a compatible set of companions`, ...shown] };
}

/** A range nothing satisfies, for a requirement whose range did not parse (config and metadata validate them). */
function neverRange() {
  const range = toRange("<0.0.0-0");
  if (range === null) throw new Error("unreachable: constant range");
  return range;
}
