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
  ])("%s", (_name, overrides, expected) => {
    expect(nextAction({ ...base, ...overrides })).toEqual(expected);
  });
});

describe("pruneCandidates", () => {
  it("never prunes the active or previous image and orders versions numerically", () => {
    const store = ["3.9.0", "3.10.0", "3.11.0", "3.2.0"].map((v) => img(v));
    expect(
      pruneCandidates({ store, keep: 1, previous: "k-3.2.0-x86-64.raw", staged: null }, "k-3.9.0-x86-64.raw"),
    ).toEqual(["k-3.10.0-x86-64.raw"]);
  });

  it("keeps a newer image made for another release (a coming one), prunes an older one (a past one)", () => {
    const store = [img("3.31.0", false), img("3.32.0"), img("3.33.0", false), img("3.34.0", false)];
    expect(pruneCandidates({ store, keep: 0, previous: null, staged: null }, "k-3.32.0-x86-64.raw")).toEqual([
      "k-3.31.0-x86-64.raw",
    ]);
  });

  it("keeps the image staged for the next OS release", () => {
    const store = ["3.1.0", "3.2.0", "3.3.0"].map((v) => img(v));
    expect(pruneCandidates({ store, keep: 0, previous: null, staged: "k-3.1.0-x86-64.raw" }, null)).toEqual([
      "k-3.3.0-x86-64.raw",
      "k-3.2.0-x86-64.raw",
    ]);
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
