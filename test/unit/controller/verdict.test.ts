import { describe, expect, it } from "vitest";
import { passVerdict, skippedNewer, type VerdictMember } from "../../../src/controller/verdict.ts";
import type { SkippedCandidate, Target } from "../../../src/model.ts";
import type { LinkState } from "../../../src/store/link.ts";

const k = (version: string) => `kata-containers-${version}-x86-64.raw`;
const ch = (version: string) => `cloud-hypervisor-${version}-x86-64.raw`;
const linked = (file: string): LinkState => ({
  kind: "store",
  file,
  target: `../../var/lib/kata-sysextd/images/${file}`,
});
const published = (file: string, version: string): Target => ({
  version,
  file,
  remote: { url: `http://127.0.0.1/${file}`, sha256: "a".repeat(64) },
});
const stored = (file: string, version: string): Target => ({ version, file, remote: null });

const kata = (link: LinkState, target: Target | null, targetQuarantined = false): VerdictMember => ({
  name: "kata-containers",
  primary: true,
  linkPath: "/etc/extensions/kata-containers.raw",
  link,
  target,
  targetQuarantined,
});
const hypervisor = (link: LinkState, target: Target | null): VerdictMember => ({
  name: "cloud-hypervisor",
  primary: false,
  linkPath: "/etc/extensions/cloud-hypervisor.raw",
  link,
  target,
  targetQuarantined: false,
});

describe("passVerdict", () => {
  it.each<[string, VerdictMember[], boolean, { code: string; message: RegExp; remedy?: RegExp } | null]>([
    ["every member on its target", [kata(linked(k("3.32.0")), published(k("3.32.0"), "3.32.0"))], true, null],
    [
      "the target was quarantined instead of activated",
      [kata(linked(k("3.30.0")), published(k("3.32.0"), "3.32.0"), true)],
      true,
      { code: "inspect-failed", message: /3\.32\.0.* is not active \(it failed inspection and was quarantined\)/ },
    ],
    [
      "the target is not active for another reason",
      [kata(linked(k("3.30.0")), stored(k("3.32.0"), "3.32.0"))],
      true,
      { code: "activation-failed", message: /^kata-containers-3\.32\.0-x86-64\.raw is not active$/ },
    ],
    [
      "nothing qualifies and Kata must be active",
      [kata({ kind: "absent" }, null)],
      true,
      { code: "no-compatible-version", message: /no compatible Kata image/ },
    ],
    ["nothing qualifies at boot: Kata may stay unlinked", [kata({ kind: "absent" }, null)], false, null],
    ["nothing new qualifies, but one is active", [kata(linked(k("3.30.0")), null)], true, null],
    [
      "a companion without a target is not an error",
      [kata(linked(k("3.32.0")), stored(k("3.32.0"), "3.32.0")), hypervisor({ kind: "absent" }, null)],
      true,
      null,
    ],
    [
      "a companion off its target fails the pass",
      [
        kata(linked(k("3.32.0")), stored(k("3.32.0"), "3.32.0")),
        hypervisor(linked(ch("40.0")), stored(ch("41.0"), "41.0")),
      ],
      true,
      { code: "activation-failed", message: /cloud-hypervisor-41\.0-x86-64\.raw is not active/ },
    ],
    [
      "an unverified file where the link goes: taken over by a pass with the network",
      [kata({ kind: "foreign", detail: "a regular file", target: null }, stored(k("3.32.0"), "3.32.0"))],
      false,
      {
        code: "activation-failed",
        message: /a regular file/,
        remedy: /SHA256SUMS vouches.*move .*kata-containers\.raw away/,
      },
    ],
    [
      "a symlink somewhere else: the operator removes it",
      [kata({ kind: "foreign", detail: "points elsewhere", target: "/opt/x.raw" }, null)],
      false,
      { code: "activation-failed", message: /points elsewhere/, remedy: /remove .*kata-containers\.raw/ },
    ],
  ])("%s", (_, members, requireActive, expected) => {
    const error = passVerdict(members, requireActive);
    if (expected === null) {
      expect(error).toBeNull();
      return;
    }
    expect(error?.code).toBe(expected.code);
    expect(error?.message).toMatch(expected.message);
    if (expected.remedy !== undefined) expect(error?.remedy).toMatch(expected.remedy);
  });
});

describe("skippedNewer", () => {
  const skip = (version: string): SkippedCandidate => ({ file: k(version), version, reason: "x", retryAt: null });
  it.each<[string, string | null, string[], string[]]>([
    [
      "only those newer than the active one, newest first",
      "3.32.0",
      ["3.33.0", "3.30.0", "3.40.0"],
      ["3.40.0", "3.33.0"],
    ],
    ["all of them when nothing is active", null, ["3.30.0", "3.33.0"], ["3.33.0", "3.30.0"]],
    ["none when the active one is the newest", "3.40.0", ["3.33.0"], []],
    ["semver order, not string order", "3.9.0", ["3.10.0", "3.8.0"], ["3.10.0"]],
  ])("%s", (_, active, skipped, expected) => {
    expect(skippedNewer(active, skipped.map(skip)).map((s) => s.version)).toEqual(expected);
  });
});
