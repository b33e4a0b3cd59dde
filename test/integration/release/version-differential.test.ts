// compareVersions against systemd's own implementation: `systemd-analyze compare-versions A B` exits 0 for
// equal, 11 for A > B and 12 for A < B. One shell runs all pairs; the strings arrive as positional parameters.
import { existsSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { run } from "../../../src/exec.ts";
import { compareVersions } from "../../../src/release/version.ts";
import { skipWithout, unless } from "../../helpers/needs.ts";

const noAnalyze = skipWithout(
  unless(
    existsSync("/usr/bin/systemd-analyze") || existsSync("/bin/systemd-analyze"),
    "systemd-analyze is not installed (Debian package systemd)",
  ),
  "the systemd-analyze differential test",
);
const COMPARE_ALL = `
while [ $# -ge 2 ]; do
  systemd-analyze compare-versions -- "$1" "$2" >/dev/null 2>&1
  echo $?
  shift 2
done`;
const FROM_EXIT: Record<string, number> = { "0": 0, "11": 1, "12": -1 };

describe.skipIf(noAnalyze)("compareVersions agrees with systemd-analyze compare-versions", () => {
  it("on hand-picked and generated pairs", async () => {
    const picked: [string, string][] = [
      ["", "~"],
      ["0", "~"],
      ["123^post1", "123.a-1"],
      ["4593.2.5", "4593.2.10"],
      ["3.32.0", "3.32.0~rc1"],
      ["1.0-rc1", "1.0"],
      ["00123", "123"],
      ["a", "A"],
      ["1α2", "1.2"],
      ["-1", "1"],
      ["^", "-"],
      ["1.", "1-"],
      ["~~", "~"],
    ];
    const unit = fc.constantFrom(..."0123456789abZ.-~^_+".split(""), "00", "10", "α");
    const version = fc.array(unit, { maxLength: 8 }).map((parts) => parts.join(""));
    const generated = fc.sample(fc.tuple(version, version), { numRuns: 250, seed: 4593 });
    const pairs = [...picked, ...generated];
    const res = await run("sh", ["-c", COMPARE_ALL, "sh", ...pairs.flat()], { timeoutMs: 60_000 });
    const answers = res.stdout.trim().split("\n");
    expect(answers).toHaveLength(pairs.length);
    const disagreements = pairs.flatMap(([a, b], i) => {
      const systemd = FROM_EXIT[answers[i] ?? ""];
      return systemd === compareVersions(a, b)
        ? []
        : [`${JSON.stringify(a)} vs ${JSON.stringify(b)}: systemd ${systemd}`];
    });
    expect(disagreements).toEqual([]);
  }, 60_000);
});
