import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseManifest } from "../../../src/release/manifest.ts";
import type { ReleaseMetadata } from "../../../src/release/metadata.ts";
import { parseExtensionRelease, parseHostRelease } from "../../../src/release/os-release.ts";
import { type ResolveInput, resolve, resolveOffline } from "../../../src/release/resolve.ts";

const host = (versionId: string) =>
  parseHostRelease(`ID=flatcar\nID_LIKE=coreos\nVERSION_ID=${versionId}\nSYSEXT_LEVEL=1.0\n`);
const sha = (n: number): string => n.toString(16).padStart(64, "0");
const manifest = (...files: string[]) => parseManifest(files.map((f, i) => `${sha(i + 1)}  ${f}\n`).join("")).entries;
const kata = (v: string, arch = "x86-64"): string => `kata-containers-${v}-${arch}.raw`;

const base = (over: Partial<ResolveInput> = {}): ResolveInput => ({
  host: host("4593.2.5"),
  arch: "x86-64",
  name: "kata-containers",
  manifest: manifest(kata("3.30.0"), kata("3.32.0"), kata("3.31.1"), kata("3.33.0", "arm64"), kata("3.20.0")),
  installed: [],
  policy: { versions: ">=3.21.0", constraints: [] },
  ...over,
});

const KATA4 = { kata: ">=4.0.0", flatcar: ">=4459.0.0", reason: "needs kernel 6.6" };

describe("resolve", () => {
  it("takes the newest version for the host's architecture", () => {
    expect(resolve(base())).toEqual({
      ok: true,
      version: "3.32.0",
      file: kata("3.32.0"),
      sha256: sha(2),
      source: "remote",
      passedOver: [],
    });
  });

  it("orders by version, not by text (3.100.0 > 3.32.0)", () => {
    const r = resolve(base({ manifest: manifest(kata("3.32.0"), kata("3.100.0"), kata("3.9.0")) }));
    expect(r.ok && r.version).toBe("3.100.0");
  });

  it("prefers an installed copy of the chosen version and keeps the manifest digest", () => {
    const r = resolve(base({ installed: ["3.32.0", "3.30.0"] }));
    expect(r).toMatchObject({ ok: true, version: "3.32.0", source: "installed", sha256: sha(2) });
  });

  it("uses an installed version the manifest no longer lists", () => {
    const r = resolve(base({ manifest: [], installed: ["3.31.0"] }));
    expect(r).toEqual({
      ok: true,
      version: "3.31.0",
      file: kata("3.31.0"),
      sha256: null,
      source: "installed",
      passedOver: [],
    });
  });

  it("honours policy.versions and says what it passed over", () => {
    const r = resolve(base({ policy: { versions: "<3.32.0 >=3.21.0", constraints: [] } }));
    expect(r).toMatchObject({ ok: true, version: "3.31.1" });
    expect(r.ok && r.passedOver).toEqual(['3.32.0: outside policy.versions "<3.32.0 >=3.21.0"']);
  });

  it("skips pre-releases unless the range asks for them", () => {
    const m = manifest(kata("4.0.0-rc1"), kata("3.32.0"));
    expect(resolve(base({ manifest: m, host: host("4593.2.5") }))).toMatchObject({ version: "3.32.0" });
    const pre = resolve(base({ manifest: m, policy: { versions: ">=4.0.0-rc0", constraints: [] } }));
    expect(pre).toMatchObject({ version: "4.0.0-rc1" });
  });

  it("applies Kata-to-Flatcar constraints to the host it is asked about (booted or not)", () => {
    const m = manifest(kata("4.0.0"), kata("3.32.0"));
    const policy = { versions: ">=3.21.0", constraints: [KATA4] };
    const old = resolve(base({ manifest: m, policy, host: host("4081.3.10") }));
    expect(old).toMatchObject({ ok: true, version: "3.32.0" });
    expect(old.ok && old.passedOver).toEqual([
      "4.0.0: policy.constraints: kata >=4.0.0 needs flatcar >=4459.0.0, host VERSION_ID is 4081.3.10 (needs kernel 6.6)",
    ]);
    // The same catalogue for the update's new_version.
    expect(resolve(base({ manifest: m, policy, host: host("4593.2.5") }))).toMatchObject({ version: "4.0.0" });
  });

  it("honours the publisher's metadata: constraints and withdrawals", () => {
    const metadata: ReleaseMetadata = {
      constraints: [{ kata: ">=3.32.0", flatcar: ">=5000.0.0", reason: "needs a future kernel" }],
      withdrawn: [{ kata: "3.31.1", reason: "broken shim" }],
      requires: [],
      kernels: [],
      problems: [],
    };
    const r = resolve(base({ metadata }));
    expect(r).toMatchObject({ ok: true, version: "3.30.0" });
    expect(r.ok && r.passedOver).toEqual([
      "3.32.0: release metadata: kata >=3.32.0 needs flatcar >=5000.0.0, host VERSION_ID is 4593.2.5 (needs a future kernel)",
      "3.31.1: withdrawn by the publisher (broken shim)",
    ]);
  });

  it("applies constraints and withdrawals to pre-releases the policy opted into", () => {
    // semver's opt-in rule is for selecting: ">=4.0.0" alone would not match 4.1.0-rc1.
    const m = manifest(kata("4.1.0-rc1"), kata("3.32.0"));
    const versions = ">=3.21.0 || >=4.1.0-rc0";
    const constrained = resolve(
      base({ manifest: m, host: host("4081.3.10"), policy: { versions, constraints: [KATA4] } }),
    );
    expect(constrained).toMatchObject({ ok: true, version: "3.32.0" });
    expect(constrained.ok && constrained.passedOver[0]).toContain("4.1.0-rc1: policy.constraints: kata >=4.0.0");
    const metadata: ReleaseMetadata = {
      constraints: [],
      withdrawn: [{ kata: ">=4.0.0", reason: "4.x shim crashes" }],
      requires: [],
      kernels: [],
      problems: [],
    };
    const withdrawn = resolve(base({ manifest: m, metadata, policy: { versions, constraints: [] } }));
    expect(withdrawn).toMatchObject({ ok: true, version: "3.32.0" });
    expect(withdrawn.ok && withdrawn.passedOver).toEqual(["4.1.0-rc1: withdrawn by the publisher (4.x shim crashes)"]);
  });

  it("refuses constrained versions when the host VERSION_ID is not a version", () => {
    const weird = parseHostRelease("ID=flatcar\nVERSION_ID=rolling\n");
    const r = resolve(
      base({ host: weird, manifest: manifest(kata("4.0.0")), policy: { versions: "*", constraints: [KATA4] } }),
    );
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reasons[1]).toContain("host VERSION_ID is rolling");
  });

  it("explains precisely when nothing qualifies", () => {
    const r = resolve(base({ policy: { versions: ">=3.40.0", constraints: [] } }));
    expect(r).toEqual({
      ok: false,
      reasons: [
        "no kata-containers version for x86-64 is acceptable on flatcar 4593.2.5",
        '3.32.0: outside policy.versions ">=3.40.0"',
        '3.31.1: outside policy.versions ">=3.40.0"',
        '3.30.0: outside policy.versions ">=3.40.0"',
        '3.20.0: outside policy.versions ">=3.40.0"',
      ],
    });
  });

  it("says when the manifest has nothing for this architecture", () => {
    const r = resolve(base({ arch: "riscv64" }));
    expect(r).toEqual({
      ok: false,
      reasons: [
        "SHA256SUMS lists no kata-containers image for riscv64 (it has images for arm64, x86-64), and none is installed",
      ],
    });
  });

  it.each<[string, { listed: number; installed: number }, string]>([
    [
      "nothing left out",
      { listed: 0, installed: 0 },
      "SHA256SUMS lists no kata-containers image for x86-64, and none is installed",
    ],
    [
      "every listed image left out by the caller, some stored for another release",
      { listed: 5, installed: 4 },
      "SHA256SUMS lists 5 kata-containers images for x86-64, none of which may be tried here, and the 4 kata-containers images installed may not be linked here",
    ],
    [
      "one listed and left out, nothing stored",
      { listed: 1, installed: 0 },
      "SHA256SUMS lists 1 kata-containers image for x86-64, none of which may be tried here, and none is installed",
    ],
  ])("with nothing to choose from, never calls what the caller left out absent: %s", (_, withheld, reason) => {
    expect(resolve(base({ manifest: [], installed: [], withheld }))).toEqual({ ok: false, reasons: [reason] });
  });

  it("says which SHA256SUMS line was rejected, and how many, when the manifest offers nothing", () => {
    // One space between digest and name: a hand-written SHA256SUMS.
    const parsed = parseManifest(`${sha(1)} ${kata("3.32.0")}\n${sha(2)} ${kata("3.31.0")}\n`);
    const r = resolve(base({ manifest: parsed.entries, rejected: parsed.rejected }));
    expect(r).toEqual({
      ok: false,
      reasons: [
        "SHA256SUMS lists no kata-containers image for x86-64, and none is installed",
        'SHA256SUMS: 2 lines rejected, first line 1: expected "<sha256>  <file>" or "<sha256> *<file>"',
      ],
    });
  });

  it("reports a policy range that does not parse instead of guessing", () => {
    expect(resolve(base({ policy: { versions: "latest", constraints: [] } }))).toEqual({
      ok: false,
      reasons: ['policy.versions: "latest" is not a semver range'],
    });
  });

  it("sets non-semver versions aside with a reason", () => {
    const r = resolve(base({ manifest: manifest(kata("nightly"), kata("3.1.0")) }));
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reasons.at(-1)).toBe("not semver, so policy.versions cannot admit them: nightly");
  });

  it("caps long explanations", () => {
    const files = Array.from({ length: 50 }, (_, i) => kata(`1.${i}.0`));
    const r = resolve(base({ manifest: manifest(...files) }));
    expect(!r.ok && r.reasons).toHaveLength(12);
    expect(!r.ok && r.reasons[11]).toBe("… and 40 older versions rejected as well");
  });

  it("never throws and never picks a file outside the manifest or store, whatever the input", () => {
    const file = fc.oneof(
      fc.string({ unit: "binary", maxLength: 40 }),
      fc.stringMatching(/^[0-9a-z.~^+-]{1,12}$/).map((v) => kata(v)),
    );
    fc.assert(
      fc.property(
        fc.array(file, { maxLength: 15 }),
        fc.array(fc.string({ maxLength: 12 }), { maxLength: 4 }),
        fc.string({ maxLength: 12 }),
        fc.string({ maxLength: 12 }),
        (files, installed, versions, hostVersion) => {
          const m = manifest(...files.filter((f) => !f.includes("\n")));
          const r = resolve(
            base({ manifest: m, installed, host: host(hostVersion), policy: { versions, constraints: [KATA4] } }),
          );
          if (r.ok) {
            const known = m.some((e) => e.file === r.file) || installed.includes(r.version);
            expect(known).toBe(true);
            expect(r.file).toBe(kata(r.version));
          } else {
            expect(r.reasons.length).toBeGreaterThan(0);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("resolveOffline (boot path)", () => {
  const any = parseExtensionRelease("ID=_any\nARCHITECTURE=x86-64\n");
  const pinned = (v: string) => parseExtensionRelease(`ID=flatcar\nVERSION_ID=${v}\n`);
  const input = (images: { version: string; release: ReturnType<typeof parseExtensionRelease> | null }[]) => ({
    host: parseHostRelease("ID=flatcar\nVERSION_ID=4650.0.0\n"),
    arch: "x86-64",
    name: "kata-containers",
    images,
    policy: { versions: ">=3.21.0", constraints: [] },
  });

  it("picks the newest installed image that systemd-sysext would merge", () => {
    const r = resolveOffline(
      input([
        { version: "3.33.0", release: pinned("4593.2.5") },
        { version: "3.32.0", release: any },
        { version: "3.34.0", release: null },
      ]),
    );
    expect(r).toEqual({
      ok: true,
      version: "3.32.0",
      source: "installed",
      reasons: ['ID: "_any" matches every host; VERSION_ID and SYSEXT_LEVEL are not checked'],
      passedOver: [
        "3.34.0: extension-release: /usr/lib/extension-release.d/extension-release.kata-containers is missing in the image",
        '3.33.0: VERSION_ID: extension has "4593.2.5", host has "4650.0.0" (host has no SYSEXT_LEVEL)',
      ],
    });
  });

  it("explains when no installed image fits", () => {
    const r = resolveOffline(input([{ version: "3.20.0", release: any }]));
    expect(r).toEqual({
      ok: false,
      reasons: [
        "no kata-containers version for x86-64 is acceptable on flatcar 4650.0.0",
        '3.20.0: outside policy.versions ">=3.21.0"',
      ],
    });
    expect(resolveOffline(input([]))).toEqual({ ok: false, reasons: ["no kata-containers image is installed"] });
  });
});
