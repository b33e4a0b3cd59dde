import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseHostRelease } from "../../../src/release/os-release.ts";
import { type CompanionInput, type Requirement, resolveSet, type SetInput } from "../../../src/release/set.ts";
import { satisfies, toRange, toRestrictingRange } from "../../../src/release/version.ts";

const host = parseHostRelease("ID=flatcar\nVERSION_ID=4593.2.5\nSYSEXT_LEVEL=1.0\n");
const sha = "a".repeat(64);
const entries = (name: string, versions: string[]) =>
  versions.map((v, i) => ({ file: `${name}-${v}-x86-64.raw`, sha256: sha, line: i + 1 }));

function input(kata: string[], ch: string[], requires: Requirement[] = [], extra: Partial<SetInput> = {}): SetInput {
  const companion: CompanionInput = {
    name: "cloud-hypervisor",
    manifest: entries("cloud-hypervisor", ch),
    installed: [],
    versions: ">=0",
  };
  return {
    primary: {
      host,
      arch: "x86-64",
      name: "kata-containers",
      manifest: entries("kata-containers", kata),
      installed: [],
      policy: { versions: ">=3.0.0", constraints: [] },
    },
    companions: [companion],
    requires,
    kernel: { range: null, shipped: [] },
    ...extra,
  };
}

const req = (kata: string, versions: string, reason = "tested pair"): Requirement => ({
  kata,
  companion: "cloud-hypervisor",
  versions,
  reason,
  origin: "policy.requires[0]",
});

describe("resolveSet", () => {
  it("takes the newest Kata with the newest companion its requirements allow; v-prefixed versions keep their name", () => {
    const r = resolveSet(input(["3.31.0", "3.32.0"], ["v50.0", "v51.2", "v53.0"], [req("3.32.x", ">=51.0 <53")]));
    expect(r).toEqual({
      ok: true,
      members: [
        { name: "kata-containers", version: "3.32.0", file: "kata-containers-3.32.0-x86-64.raw", sha256: sha },
        { name: "cloud-hypervisor", version: "v51.2", file: "cloud-hypervisor-v51.2-x86-64.raw", sha256: sha },
      ],
    });
  });

  it("falls back to an older Kata when the newest one's requirement cannot be met, and says so when none can", () => {
    const ok = resolveSet(input(["3.31.0", "3.32.0"], ["v50.0"], [req("3.32.x", ">=51.0")]));
    expect(ok.ok && ok.members.map((m) => m.version)).toEqual(["3.31.0", "v50.0"]);

    const none = resolveSet(
      input(["3.32.0"], ["v50.0", "v53.0"], [req("3.32.x", ">=51.0 <53", "CH 53 breaks virtio-fs")]),
    );
    expect(none.ok).toBe(false);
    expect(none.ok ? [] : none.reasons).toEqual([
      "no kata-containers release has a compatible set of companions",
      'kata-containers 3.32.0: needs cloud-hypervisor versions ">=0" and ">=51.0 <53" (policy.requires[0]: CH 53 breaks virtio-fs); available: v53.0, v50.0',
    ]);
  });

  it("applies the guest kernel policy to what the metadata says each release ships", () => {
    const kernel = {
      range: "6.12.x",
      shipped: [
        { kata: "3.32.x", kernel: "6.13.1" },
        { kata: "3.31.x", kernel: "6.12.8" },
      ],
    };
    const r = resolveSet(input(["3.31.0", "3.32.0", "3.33.0"], ["v51.0"], [], { kernel }));
    expect(r.ok && r.members[0]?.version).toBe("3.31.0");
    const pinnedUnknown = resolveSet(input(["3.33.0"], ["v51.0"], [], { kernel }));
    expect(pinnedUnknown.ok ? [] : pinnedUnknown.reasons[1]).toContain("its guest kernel is not published");
  });

  it("applies requirements and shipped kernels to pre-releases the policy opted into", () => {
    const rc = (extra: Partial<SetInput> = {}, requires: Requirement[] = []) => {
      const base = input(["3.32.0", "4.1.0-rc1"], ["v50.0", "v51.0.0-rc1"], requires, extra);
      const policy = { versions: ">=3.0.0 || >=4.1.0-rc0", constraints: [] };
      return resolveSet({
        ...base,
        primary: { ...base.primary, policy },
        companions: base.companions.map((c) => ({ ...c, versions: ">=50.0.0 || >=51.0.0-rc0" })),
      });
    };
    // The requirement on 4.x reaches 4.1.0-rc1, and ">=50.1.0" admits the RC the companion's own range opted into.
    const required = rc({}, [req(">=4.0.0", ">=50.1.0")]);
    expect(required.ok && required.members.map((m) => m.version)).toEqual(["4.1.0-rc1", "v51.0.0-rc1"]);
    const unmet = rc({}, [req(">=4.0.0", ">=52.0.0")]);
    expect(unmet.ok && unmet.members.map((m) => m.version)).toEqual(["3.32.0", "v51.0.0-rc1"]);
    // What the metadata says 4.x ships is what 4.1.0-rc1 ships, not "unpublished".
    const kernel = { range: "6.12.x", shipped: [{ kata: ">=4.0.0", kernel: "6.12.9" }] };
    const byKernel = rc({ kernel });
    expect(byKernel.ok && byKernel.members[0]?.version).toBe("4.1.0-rc1");
  });

  it("keeps the single-extension answer and explanation when there are no companions", () => {
    const r = resolveSet({ ...input(["3.32.0"], []), companions: [] });
    expect(r.ok && r.members).toEqual([
      { name: "kata-containers", version: "3.32.0", file: "kata-containers-3.32.0-x86-64.raw", sha256: sha },
    ]);
    const none = resolveSet({ ...input(["2.0.0"], []), companions: [] });
    expect(none.ok ? "" : none.reasons.join("\n")).toContain("policy.versions");
  });

  it("refuses a requirement on a companion that is not configured", () => {
    const r = resolveSet(input(["3.32.0"], ["v51.0"], [{ ...req("3.x", ">=1"), companion: "qemu" }]));
    expect(r.ok ? "" : r.reasons[0]).toContain('requirement on "qemu", which is not a configured companion');
  });

  it("property: any set it returns satisfies every requirement and range, and it finds one whenever one exists", () => {
    const version = fc
      .tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 5 }))
      .map(([a, b]) => `${a}.${b}.0`);
    const range = fc.tuple(fc.constantFrom(">=", "<", "^", "~", ""), version).map(([op, v]) => `${op}${v}`);
    fc.assert(
      fc.property(
        fc.uniqueArray(version, { minLength: 1, maxLength: 6 }),
        fc.uniqueArray(version, { minLength: 0, maxLength: 6 }),
        fc.array(fc.tuple(range, range), { maxLength: 4 }),
        range,
        (katas, chs, rules, chRange) => {
          const requires = rules.map(([k, v]) => req(k, v));
          const base = input(
            katas.map((v) => `3${v.slice(1)}`),
            chs.map((v) => `v${v}`),
            requires,
          );
          const set = { ...base, companions: base.companions.map((c) => ({ ...c, versions: chRange })) };
          const r = resolveSet(set);
          const sat = (v: string, rg: string, parse = toRange) => {
            const parsed = parse(rg);
            return parsed !== null && satisfies(v, parsed);
          };
          const restricts = toRestrictingRange;
          const fits = (k: string, c: string) =>
            sat(c, chRange) && requires.every((q) => !sat(k, q.kata, restricts) || sat(c, q.versions, restricts));
          // Complete as well as sound: a valid pair exists exactly when it answers ok.
          const exists = set.primary.manifest.some((k) =>
            set.companions[0]?.manifest.some((c) => fits(k.file.split("-")[2] ?? "", c.file.split("-")[2] ?? "")),
          );
          if (!r.ok) return !exists;
          const [kata, ch] = r.members;
          if (kata === undefined || ch === undefined) return false;
          return fits(kata.version, ch.version);
        },
      ),
      { numRuns: 500 },
    );
  });
});
