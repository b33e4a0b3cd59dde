import { describe, expect, it } from "vitest";
import { type CompatOptions, compatible } from "../../../src/release/compat.ts";
import { parseExtensionRelease, parseHostRelease } from "../../../src/release/os-release.ts";

const FLATCAR = "ID=flatcar\nID_LIKE=coreos\nVERSION_ID=4593.2.5\nSYSEXT_LEVEL=1.0\n";
const opts: CompatOptions = { name: "kata-containers", arch: "x86-64" };

// [title, host os-release, extension-release (null: none), options, compatible, field the reason names]
const RULES: [string, string, string | null, Partial<CompatOptions>, boolean, string][] = [
  ["host without ID merges nothing", "VERSION_ID=1\n", "ID=_any\n", {}, false, "host os-release: ID"],
  ["missing extension-release", FLATCAR, null, {}, false, "extension-release.kata-containers is missing"],
  ["release file without assignments", FLATCAR, "# only a comment\n", {}, false, "no assignments"],
  ["default scope includes system", FLATCAR, "ID=_any\n", {}, true, 'ID: "_any"'],
  ["scope portable only", FLATCAR, "ID=_any\nSYSEXT_SCOPE=portable\n", {}, false, "SYSEXT_SCOPE"],
  ["scope empty", FLATCAR, "ID=_any\nSYSEXT_SCOPE=\n", {}, false, "SYSEXT_SCOPE"],
  ["initrd scope asked", FLATCAR, "ID=_any\nSYSEXT_SCOPE=system\n", { scope: "initrd" }, false, "SYSEXT_SCOPE"],
  ["portable scope asked, default scope", FLATCAR, "ID=_any\n", { scope: "portable" }, true, "ID"],
  ["architecture mismatch", FLATCAR, "ID=_any\nARCHITECTURE=arm64\n", {}, false, "ARCHITECTURE"],
  ["architecture checked before ID", FLATCAR, "ID=debian\nARCHITECTURE=arm64\n", {}, false, "ARCHITECTURE"],
  ["architecture for an arm64 host", FLATCAR, "ID=_any\nARCHITECTURE=arm64\n", { arch: "arm64" }, true, "ID"],
  ["ARCHITECTURE=_any", FLATCAR, "ID=_any\nARCHITECTURE=_any\n", {}, true, "ID"],
  ["no ID", FLATCAR, "SYSEXT_LEVEL=1.0\n", {}, false, "ID: missing"],
  ["_any skips version checks", FLATCAR, "ID=_any\nSYSEXT_LEVEL=9\nVERSION_ID=0\n", {}, true, '"_any"'],
  ["other OS", FLATCAR, "ID=debian\nSYSEXT_LEVEL=1.0\n", {}, false, 'ID: extension is for "debian"'],
  ["ID_LIKE not honoured by default", FLATCAR, "ID=coreos\nSYSEXT_LEVEL=1.0\n", {}, false, "ID_LIKE lists it"],
  ["ID_LIKE honoured on request", FLATCAR, "ID=coreos\nSYSEXT_LEVEL=1.0\n", { matchIdLike: true }, true, "ID_LIKE"],
  ["level match", FLATCAR, "ID=flatcar\nSYSEXT_LEVEL=1.0\n", {}, true, "SYSEXT_LEVEL"],
  ["level mismatch", FLATCAR, "ID=flatcar\nSYSEXT_LEVEL=1.1\n", {}, false, "SYSEXT_LEVEL"],
  ["level beats VERSION_ID", FLATCAR, "ID=flatcar\nSYSEXT_LEVEL=1.0\nVERSION_ID=1\n", {}, true, "SYSEXT_LEVEL"],
  ["no level: VERSION_ID match", FLATCAR, "ID=flatcar\nVERSION_ID=4593.2.5\n", {}, true, "VERSION_ID"],
  ["no level: VERSION_ID mismatch", FLATCAR, "ID=flatcar\nVERSION_ID=4650.0.0\n", {}, false, "VERSION_ID"],
  ["no level, no VERSION_ID", FLATCAR, "ID=flatcar\n", {}, false, "VERSION_ID: missing"],
  ["host without level", "ID=flatcar\nVERSION_ID=1\n", "ID=flatcar\nSYSEXT_LEVEL=1.0\n", {}, false, "VERSION_ID"],
  ["rolling host", "ID=arch\n", "ID=arch\nVERSION_ID=2\n", {}, true, "neither VERSION_ID nor SYSEXT_LEVEL"],
  ["host level only", "ID=flatcar\nSYSEXT_LEVEL=1.0\n", "ID=flatcar\n", {}, true, "no SYSEXT_LEVEL"],
  [
    "host level only, mismatch",
    "ID=flatcar\nSYSEXT_LEVEL=1.0\n",
    "ID=flatcar\nSYSEXT_LEVEL=2\n",
    {},
    false,
    "SYSEXT_LEVEL",
  ],
];

describe("compatible", () => {
  it.each(RULES)("%s", (_title, host, ext, extra, expected, field) => {
    const decision = compatible(parseHostRelease(host), ext === null ? null : parseExtensionRelease(ext), {
      ...opts,
      ...extra,
    });
    expect(decision.compatible).toBe(expected);
    expect(decision.reasons).toHaveLength(1);
    expect(decision.reasons[0]).toContain(field);
  });

  it("decides for a host that has not booted yet (an update's VERSION_ID)", () => {
    const next = parseHostRelease(FLATCAR.replace("4593.2.5", "4650.0.0").replace("SYSEXT_LEVEL=1.0\n", ""));
    const pinned = parseExtensionRelease("ID=flatcar\nVERSION_ID=4593.2.5\n");
    expect(compatible(next, pinned, opts).reasons).toEqual([
      'VERSION_ID: extension has "4593.2.5", host has "4650.0.0" (host has no SYSEXT_LEVEL)',
    ]);
  });
});
