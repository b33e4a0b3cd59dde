import { describe, expect, it } from "vitest";
import { nextAction, nextJointAction, type PlanInput, pruneCandidates } from "../../../src/controller/plan.ts";

const img = (version: string, compatible = true) => ({ file: `k-${version}-x86-64.raw`, version, compatible });
const linked = (version: string) => ({ kind: "store" as const, file: `k-${version}-x86-64.raw`, target: "../x" });
const remote = (version: string) => ({
  version,
  file: `k-${version}-x86-64.raw`,
  remote: { url: "http://127.0.0.1/x", sha256: "a".repeat(64) },
});
const local = (version: string) => ({ version, file: `k-${version}-x86-64.raw`, remote: null });

const base: PlanInput = {
  link: { kind: "absent" },
  store: [],
  merged: false,
  mergeObservable: true,
  target: null,
  sandboxesRunning: 0,
  activation: "wait",
  keep: 3,
  previous: null,
  staged: null,
  deferred: null,
};

describe("nextAction", () => {
  it.each<[string, Partial<PlanInput>, ReturnType<typeof nextAction>]>([
    ["nothing wanted, nothing there", {}, null],
    ["target not in store: download", { target: remote("3.32.0") }, { kind: "download", target: remote("3.32.0") }],
    [
      "target stored, nothing active: switch",
      { target: local("3.32.0"), store: [img("3.32.0")] },
      { kind: "switch", to: "k-3.32.0-x86-64.raw", from: null },
    ],
    [
      "upgrade from the active image",
      { target: local("3.32.0"), store: [img("3.30.0"), img("3.32.0")], link: linked("3.30.0"), merged: true },
      { kind: "switch", to: "k-3.32.0-x86-64.raw", from: "k-3.30.0-x86-64.raw" },
    ],
    [
      "target stored but not for this host: blocked, the caller reports it",
      { target: local("3.32.0"), store: [img("3.32.0", false)] },
      { kind: "blocked", reason: "k-3.32.0-x86-64.raw does not match this host" },
    ],
    [
      "an image file where the link goes (not ours): blocked, never renamed over",
      {
        target: local("3.32.0"),
        store: [img("3.32.0")],
        link: { kind: "foreign", detail: "/etc/extensions/k.raw is not a symlink", target: null },
      },
      {
        kind: "blocked",
        reason:
          "/etc/extensions/k.raw is not a symlink: an image kata-sysextd did not put there is replaced only once SHA256SUMS vouches for it (the daemon's next pass), or move it away",
      },
    ],
    [
      "already active and merged",
      { target: local("3.32.0"), store: [img("3.32.0")], link: linked("3.32.0"), merged: true },
      null,
    ],
    [
      "linked but not merged (crash between link and refresh): re-merge",
      { target: local("3.32.0"), store: [img("3.32.0")], link: linked("3.32.0"), merged: false },
      { kind: "remerge", file: "k-3.32.0-x86-64.raw" },
    ],
    [
      "linked, merge not observable (--root): no re-merge loop",
      { target: local("3.32.0"), store: [img("3.32.0")], link: linked("3.32.0"), mergeObservable: false },
      null,
    ],
    [
      "sandboxes running, policy wait: defer",
      { target: local("3.32.0"), store: [img("3.32.0")], sandboxesRunning: 2 },
      { kind: "defer", reason: '2 Kata sandboxes running; waiting until none run (policy.activation = "wait")' },
    ],
    [
      "sandboxes running, policy next-boot: defer with the boot note",
      { target: local("3.32.0"), store: [img("3.32.0")], sandboxesRunning: 1, activation: "next-boot" },
      {
        kind: "defer",
        reason:
          '1 Kata sandbox running; the new image becomes active at the next boot (policy.activation = "next-boot")',
      },
    ],
    [
      "sandboxes running, policy force: switch anyway",
      { target: local("3.32.0"), store: [img("3.32.0")], sandboxesRunning: 1, activation: "force" },
      { kind: "switch", to: "k-3.32.0-x86-64.raw", from: null },
    ],
    [
      "download is not deferred by sandboxes (fetching is harmless)",
      { target: remote("3.32.0"), sandboxesRunning: 3 },
      { kind: "download", target: remote("3.32.0") },
    ],
    [
      "active image incompatible and nothing else: unlink",
      { store: [img("3.30.0", false)], link: linked("3.30.0"), merged: false },
      {
        kind: "unlink",
        reason: "k-3.30.0-x86-64.raw does not match this host and no compatible image is available",
      },
    ],
    [
      "too many images: prune the oldest beyond keep",
      {
        target: local("3.5.0"),
        keep: 1,
        store: [img("3.1.0"), img("3.2.0"), img("3.3.0"), img("3.5.0")],
        link: linked("3.5.0"),
        merged: true,
        previous: "k-3.1.0-x86-64.raw",
      },
      { kind: "prune", files: ["k-3.2.0-x86-64.raw"] },
    ],
    [
      "newer images made for another release beyond keep: pruned too (they are remembered, not fetched again)",
      {
        target: local("3.31.1"),
        keep: 1,
        store: [img("3.31.1"), img("3.44.0", false), img("3.45.0", false)],
        link: linked("3.31.1"),
        merged: true,
      },
      { kind: "prune", files: ["k-3.44.0-x86-64.raw"] },
    ],
  ])("%s", (_name, overrides, expected) => {
    expect(nextAction({ ...base, ...overrides })).toEqual(expected);
  });
});

describe("pruneCandidates", () => {
  const k = (version: string) => `k-${version}-x86-64.raw`;
  type Row = Partial<Pick<PlanInput, "keep" | "previous" | "staged" | "deferred" | "target">> & {
    store: ReturnType<typeof img>[];
    active?: string | null;
  };
  // The reviewer's host: six images for an older release (3.40–3.45) and the good 3.31.1 active.
  const olderRelease = ["3.40.0", "3.41.0", "3.42.0", "3.43.0", "3.44.0", "3.45.0"].map((v) => img(v, false));
  it.each<[string, Row, string[]]>([
    [
      "never the active or previous image, and versions ordered numerically",
      {
        store: ["3.9.0", "3.10.0", "3.11.0", "3.2.0"].map((v) => img(v)),
        keep: 1,
        previous: k("3.2.0"),
        active: k("3.9.0"),
      },
      [k("3.10.0")],
    ],
    [
      "images made for another release count against keep, newest first, older or newer than the active one",
      {
        store: [img("3.31.0", false), img("3.32.0"), img("3.33.0", false), img("3.34.0", false)],
        keep: 1,
        active: k("3.32.0"),
      },
      [k("3.33.0"), k("3.31.0")],
    ],
    [
      "six for another release and keep = 1: the newest of them stays beside the active one",
      { store: [img("3.31.1"), ...olderRelease], keep: 1, active: k("3.31.1") },
      ["3.44.0", "3.43.0", "3.42.0", "3.41.0", "3.40.0"].map(k),
    ],
    [
      "nothing active (none matches this host): keep bounds them all the same",
      { store: olderRelease, keep: 1, active: null },
      ["3.44.0", "3.43.0", "3.42.0", "3.41.0", "3.40.0"].map(k),
    ],
    [
      "the image staged for a pending OS update stays, whatever its age",
      { store: [img("3.1.0", false), img("3.2.0"), img("3.3.0")], keep: 1, staged: k("3.1.0"), active: null },
      [k("3.2.0")],
    ],
    [
      "the image deferred to the next boot stays",
      {
        store: [img("3.30.0"), img("3.31.0"), img("3.32.0"), img("3.40.0", false)],
        keep: 1,
        deferred: k("3.31.0"),
        active: k("3.30.0"),
      },
      [k("3.32.0")],
    ],
    [
      "the target stays (a pass prunes while it still waits to link it)",
      {
        store: [img("3.30.0"), img("3.32.0"), img("3.45.0", false)],
        keep: 1,
        target: local("3.32.0"),
        active: k("3.30.0"),
      },
      [],
    ],
    [
      "active, previous, staged and deferred never count against keep",
      {
        store: ["3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0", "3.6.0"].map((v) => img(v, v !== "3.4.0")),
        keep: 1,
        previous: k("3.2.0"),
        staged: k("3.4.0"),
        deferred: k("3.6.0"),
        active: k("3.3.0"),
      },
      [k("3.1.0")],
    ],
  ])("%s", (_name, row, expected) => {
    const { active = null, ...rest } = row;
    expect(pruneCandidates({ ...base, ...rest }, active)).toEqual(expected);
  });
});

describe("nextJointAction", () => {
  const kata = "kata-containers";
  const ch = "cloud-hypervisor";
  const switchTo = (to: string, from: string | null) => ({ kind: "switch" as const, to, from });

  it("fetches every member before any link moves", () => {
    expect(
      nextJointAction([
        { member: kata, action: switchTo("k-3.33.0-x86-64.raw", "k-3.32.0-x86-64.raw") },
        { member: ch, action: { kind: "download", target: remote("52.0") } },
      ]),
    ).toEqual({ kind: "download", member: ch, target: remote("52.0") });
  });

  it("moves every member that switches together", () => {
    expect(
      nextJointAction([
        { member: kata, action: switchTo("k-3.33.0-x86-64.raw", "k-3.32.0-x86-64.raw") },
        { member: ch, action: switchTo("c-52.0.raw", "c-51.0.raw") },
      ]),
    ).toEqual({
      kind: "switch",
      changes: [
        { member: kata, to: "k-3.33.0-x86-64.raw", from: "k-3.32.0-x86-64.raw" },
        { member: ch, to: "c-52.0.raw", from: "c-51.0.raw" },
      ],
    });
  });

  it("moves nobody when one member's target cannot be linked here", () => {
    const input: PlanInput = {
      ...base,
      target: local("3.33.0"),
      store: [img("3.32.0"), img("3.33.0", false)],
      link: linked("3.32.0"),
    };
    const blocked = nextAction(input);
    expect(blocked).toEqual({ kind: "blocked", reason: "k-3.33.0-x86-64.raw does not match this host" });
    expect(
      nextJointAction([
        { member: kata, action: blocked },
        { member: ch, action: switchTo("c-52.0.raw", "c-51.0.raw") },
      ]),
    ).toBeNull();
  });
});
