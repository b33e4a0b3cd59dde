import { describe, expect, it } from "vitest";
import { HELD_REASON, judgeRemote, type RemoteInput, skippedReleases } from "../../../src/controller/versions.ts";
import { parseHostRelease } from "../../../src/release/os-release.ts";

const kata = (v: string, arch = "x86-64"): string => `kata-containers-${v}-${arch}.raw`;
const input = (file: string, over: Partial<RemoteInput> = {}): RemoteInput => ({
  host: parseHostRelease("ID=flatcar\nID_LIKE=coreos\nVERSION_ID=4593.2.5\nSYSEXT_LEVEL=1.0\n"),
  arch: "x86-64",
  policy: { versions: ">=3.21.0", constraints: [] },
  name: "kata-containers",
  entry: { file, sha256: "a".repeat(64), line: 1 },
  metadata: undefined,
  held: false,
  stored: undefined,
  ...over,
});

describe("judgeRemote", () => {
  it.each<[string, RemoteInput, ReturnType<typeof judgeRemote>]>([
    [
      "a version in policy would be taken",
      input(kata("3.32.0")),
      { version: "3.32.0", compatible: true, reason: null, held: false },
    ],
    ["another architecture's image is no version of it", input(kata("3.32.0", "arm64")), null],
    ["another extension's image is no version of it", input("cloud-hypervisor-44.0-x86-64.raw"), null],
    [
      "a version outside policy says why",
      input(kata("3.20.0")),
      {
        version: "3.20.0",
        compatible: false,
        reason:
          'no kata-containers version for x86-64 is acceptable on flatcar 4593.2.5; 3.20.0: outside policy.versions ">=3.21.0"',
        held: false,
      },
    ],
    [
      "a held version is not promised",
      input(kata("3.32.0"), { held: true }),
      { version: "3.32.0", compatible: false, reason: HELD_REASON, held: true },
    ],
    [
      "a version stored as made for another OS release is not linked here",
      input(kata("3.32.0"), { stored: { compatible: false, reasons: ["VERSION_ID 4650.0.0 differs"] } }),
      {
        version: "3.32.0",
        compatible: false,
        reason: "made for another release of the OS (stored, not linked here): VERSION_ID 4650.0.0 differs",
        held: false,
      },
    ],
    [
      "a version fetched before as made for another OS release and pruned since is not fetched again",
      input(kata("3.32.0"), { stored: { compatible: false, reasons: ["VERSION_ID 4000.0.0 differs"], pruned: true } }),
      {
        version: "3.32.0",
        compatible: false,
        reason:
          "made for another release of the OS (fetched before and pruned, not fetched again): VERSION_ID 4000.0.0 differs",
        held: false,
      },
    ],
    [
      "a version stored for this host is taken",
      input(kata("3.32.0"), { stored: { compatible: true, reasons: [] } }),
      { version: "3.32.0", compatible: true, reason: null, held: false },
    ],
  ])("%s", (_, given, expected) => {
    expect(judgeRemote(given)).toEqual(expected);
  });
});

describe("skippedReleases", () => {
  it.each([
    ["nothing skipped", {}, []],
    [
      "every member's, newest first",
      {
        "kata-containers": [{ file: kata("3.31.0"), version: "3.31.0", reason: "bad", retryAt: null }],
        "cloud-hypervisor": [
          { file: "cloud-hypervisor-44.0-x86-64.raw", version: "44.0", reason: "gone", retryAt: null },
        ],
      },
      ["cloud-hypervisor 44.0", "kata-containers 3.31.0"],
    ],
  ])("%s", (_, byMember, expected) => {
    expect(skippedReleases(byMember).map((s) => `${s.member} ${s.version}`)).toEqual(expected);
  });
});
