// The optional per-release metadata a publisher may put next to SHA256SUMS, at <url><name>/metadata.json:
//
//   {
//     "schemaVersion": 1,
//     "constraints": [{"kata": ">=4.0.0", "flatcar": ">=4459.0.0", "reason": "needs the 6.6 kernel's virtio-fs"}],
//     "withdrawn": [{"kata": "3.30.0", "reason": "shim crashes on cgroup v1 hosts"}],
//     "requires": [{"kata": "3.32.x", "companion": "cloud-hypervisor", "versions": ">=51.0 <53", "reason": "tested"}],
//     "kernels": [{"kata": "3.32.x", "kernel": "6.12.8"}]
//   }
//
// constraints have the meaning of policy.constraints in config.toml (Kata versions in `kata` need a Flatcar in
// `flatcar`); withdrawn takes Kata versions out of consideration; requires and kernels tie a Kata release to
// companion extension versions and name the guest kernel it ships (see src/release/set.ts). Every range is a semver range. A document we
// cannot read fully is refused as a whole, so a half-understood constraint never widens what we install;
// unknown keys are reported and skipped, so a publisher can add fields.
import type { Constraint } from "../config/schema.ts";
import { fail, KataError, ok, type Result } from "../errors.ts";
import { toRange } from "./version.ts";

export const METADATA_FILE = "metadata.json";
export const METADATA_SCHEMA_VERSION = 1;
const MAX_METADATA_CHARS = 1024 * 1024;
const MAX_ENTRIES = 10_000;

export interface Withdrawal {
  kata: string;
  reason: string;
}

/** Kata releases in `kata` need `companion` versions in `versions` (companion extensions, issue 9). */
export interface PublishedRequirement {
  kata: string;
  companion: string;
  versions: string;
  reason: string;
}

/** The guest kernel the Kata releases in `kata` ship. */
export interface ShippedKernel {
  kata: string;
  kernel: string;
}

export interface ReleaseMetadata {
  constraints: Constraint[];
  withdrawn: Withdrawal[];
  requires: PublishedRequirement[];
  kernels: ShippedKernel[];
  /** Unknown keys that were skipped. */
  problems: string[];
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

export function parseMetadata(text: string, origin = METADATA_FILE): Result<ReleaseMetadata> {
  const bad = (message: string): Result<never> =>
    fail(
      new KataError("manifest-invalid", `${origin}: ${message}`, {
        remedy: "fix the release metadata on the server, or remove it to rely on SHA256SUMS and local policy",
      }),
    );
  if (text.length > MAX_METADATA_CHARS) return bad(`larger than ${MAX_METADATA_CHARS} characters`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    return bad(`not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!isObject(doc)) return bad("must be a JSON object");
  const problems: string[] = [];
  if (doc.schemaVersion !== METADATA_SCHEMA_VERSION) {
    return bad(`"schemaVersion" must be ${METADATA_SCHEMA_VERSION}, got ${JSON.stringify(doc.schemaVersion)}`);
  }
  for (const key of Object.keys(doc)) {
    if (!["schemaVersion", "constraints", "withdrawn", "requires", "kernels"].includes(key)) {
      problems.push(`unknown key "${key}" skipped`);
    }
  }
  const constraints = entries(doc.constraints, "constraints", ["kata", "flatcar", "reason"], problems);
  if (!constraints.ok) return bad(constraints.error);
  const withdrawn = entries(doc.withdrawn, "withdrawn", ["kata", "reason"], problems);
  if (!withdrawn.ok) return bad(withdrawn.error);
  const requires = entries(doc.requires, "requires", ["kata", "companion", "versions", "reason"], problems);
  if (!requires.ok) return bad(requires.error);
  const kernels = entries(doc.kernels, "kernels", ["kata", "kernel"], problems);
  if (!kernels.ok) return bad(kernels.error);
  const field = (e: Record<string, string>, k: string): string => e[k] ?? "";
  return ok({
    requires: requires.value.map((e) => ({
      kata: field(e, "kata"),
      companion: field(e, "companion"),
      versions: field(e, "versions"),
      reason: field(e, "reason"),
    })),
    kernels: kernels.value.map((e) => ({ kata: field(e, "kata"), kernel: field(e, "kernel") })),
    constraints: constraints.value.map((e) => ({
      kata: e.kata ?? "",
      flatcar: e.flatcar ?? "",
      reason: e.reason ?? "",
    })),
    withdrawn: withdrawn.value.map((e) => ({ kata: e.kata ?? "", reason: e.reason ?? "" })),
    problems,
  });
}

/** Checks a list of objects whose fields are all strings: semver ranges, except the texts reason and companion. */
function entries(
  value: unknown,
  key: string,
  fields: readonly string[],
  problems: string[],
): Result<Record<string, string>[], string> {
  if (value === undefined) return ok([]);
  if (!Array.isArray(value)) return fail(`"${key}" must be an array`);
  if (value.length > MAX_ENTRIES) return fail(`"${key}" has more than ${MAX_ENTRIES} entries`);
  const out: Record<string, string>[] = [];
  for (const [index, item] of value.entries()) {
    const where = `${key}[${index}]`;
    if (!isObject(item)) return fail(`${where} must be an object`);
    const entry: Record<string, string> = {};
    for (const field of fields) {
      const v = item[field];
      if (typeof v !== "string" || v.trim() === "") return fail(`${where}.${field} must be a non-empty string`);
      if (field !== "reason" && field !== "companion" && toRange(v) === null)
        return fail(`${where}.${field} must be a semver range, got "${v}"`);
      entry[field] = v;
    }
    for (const k of Object.keys(item)) {
      if (!fields.includes(k)) problems.push(`unknown key "${where}.${k}" skipped`);
    }
    out.push(entry);
  }
  return ok(out);
}
