import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  RebootSentinel,
  type SentinelAction,
  type SentinelInput,
  sentinelAction,
  sentinelLine,
} from "../../../src/cluster/reboot-sentinel.ts";

const A = "kata-sysextd: Kata 3.32.0 is staged and activates at the next boot\n";
const B = "kata-sysextd: Kata 3.33.0 is staged for Flatcar 4650.0.0 …\n";
const APT = "*** System restart required ***\n";

describe("sentinelAction: only ever remove what we wrote", () => {
  it.each<[string, SentinelInput, SentinelAction]>([
    ["no request, no file, no marker", { desired: null, found: null, ours: [] }, { kind: "none", owner: null }],
    ["request, no file: create", { desired: A, found: null, ours: [] }, { kind: "create", line: A }],
    [
      "request, no file, a stale marker (the reboot emptied /run): create",
      { desired: A, found: null, ours: [B] },
      { kind: "create", line: A },
    ],
    ["request, our file as wanted", { desired: A, found: A, ours: [A] }, { kind: "none", owner: "kata-sysextd" }],
    [
      "request with a new reason, our file: replace it",
      { desired: B, found: A, ours: [A] },
      { kind: "replace", line: B, old: A },
    ],
    [
      "a replace cut short (the marker lists both, the file is new): tidy the marker",
      { desired: B, found: B, ours: [A, B] },
      { kind: "replace", line: B, old: B },
    ],
    [
      "a replace cut short before the rename (the file is old): replace",
      { desired: B, found: A, ours: [A, B] },
      { kind: "replace", line: B, old: A },
    ],
    ["no request, our file: remove it", { desired: null, found: A, ours: [A] }, { kind: "remove" }],
    [
      "no request, a marker without its file: forget the marker",
      { desired: null, found: null, ours: [A] },
      { kind: "forget" },
    ],
    [
      "request, another package's file: it carries our request, left alone",
      { desired: A, found: APT, ours: [] },
      { kind: "none", owner: "other" },
    ],
    [
      "no request, another package's file: nothing of ours to withdraw",
      { desired: null, found: APT, ours: [] },
      { kind: "none", owner: "other" },
    ],
    [
      "no request, ours was overwritten by another package: leave theirs, forget the marker",
      { desired: null, found: APT, ours: [A] },
      { kind: "foreign", forget: true },
    ],
    [
      "request, ours was overwritten: theirs carries it",
      { desired: A, found: APT, ours: [A] },
      { kind: "foreign", forget: true },
    ],
    [
      "our very words but no marker: not provably ours, so never removed",
      { desired: null, found: A, ours: [] },
      { kind: "none", owner: "other" },
    ],
    [
      "an empty file (touch) is someone's too",
      { desired: null, found: "", ours: [A] },
      { kind: "foreign", forget: true },
    ],
  ])("%s", (_, input, expected) => {
    expect(sentinelAction(input)).toEqual(expected);
  });
});

describe("sentinelLine", () => {
  it("is one line, named", () => {
    expect(sentinelLine("Kata 3.32.0 is staged\nand activates  at the next boot")).toBe(
      "kata-sysextd: Kata 3.32.0 is staged and activates at the next boot\n",
    );
  });
});

describe("RebootSentinel", () => {
  it("a FIFO where the sentinel goes is another's file: judged without waiting for a writer, and left alone", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kata-sentinel-"));
    try {
      execFileSync("mkfifo", [join(dir, "reboot-required")]);
      const sentinel = new RebootSentinel({
        sentinel: "/reboot-required",
        host: (path) => join(dir, path),
        marker: join(dir, "marker"),
      });
      expect(await sentinel.apply(sentinelLine("Kata 3.32.0 is staged"))).toEqual({
        path: "/reboot-required",
        owner: "other",
      });
      expect(await sentinel.apply(null)).toBeNull();
      expect(existsSync(join(dir, "reboot-required"))).toBe(true);
      expect(existsSync(join(dir, "marker"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
