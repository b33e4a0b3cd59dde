import { describe, expect, it } from "vitest";
import {
  deferredTargets,
  type FilesByMember,
  holdsAfterFailedSwitch,
  holdsAfterRollback,
  type LinkMove,
  mergeHolds,
  previousOf,
  type RollbackMember,
  rollbackTargets,
  stagedOf,
  stagedVersion,
  switchRecord,
} from "../../../src/controller/decisions.ts";
import type { Target } from "../../../src/model.ts";
import { activeFile, type LinkState } from "../../../src/store/link.ts";

const k = (version: string) => `kata-containers-${version}-x86-64.raw`;
const ch = (version: string) => `cloud-hypervisor-${version}-x86-64.raw`;
const stored = (file: string, version: string): Target => ({ version, file, remote: null });

describe("activeFile", () => {
  it.each<[string, LinkState, string | null]>([
    ["a link into the store names its file", { kind: "store", file: k("3.32.0"), target: "../x" }, k("3.32.0")],
    ["no link", { kind: "absent" }, null],
    ["something not ours", { kind: "foreign", detail: "a regular file", target: null }, null],
  ])("%s", (_, link, expected) => {
    expect(activeFile(link)).toBe(expected);
  });
});

describe("previousOf", () => {
  const state = { previous: { "kata-containers": k("3.30.0"), "cloud-hypervisor": ch("40.0"), virtiofsd: null } };
  it.each<[string, string, string | null]>([
    ["Kata's is kept by its name", "kata-containers", k("3.30.0")],
    ["a companion's is kept by name", "cloud-hypervisor", ch("40.0")],
    ["a first activation recorded none", "virtiofsd", null],
    ["a member never switched has none", "nydus", null],
    ["a name that is also an object's property is no member", "constructor", null],
  ])("%s", (_, member, expected) => {
    expect(previousOf(state, member)).toBe(expected);
  });
});

describe("stagedOf and stagedVersion", () => {
  const next = { files: { "kata-containers": k("3.33.0"), "cloud-hypervisor": ch("v44.0") } };
  it.each<[string, { files: Record<string, string> } | null, string, string | null, string | null]>([
    ["Kata's is kept by its name", next, "kata-containers", k("3.33.0"), "3.33.0"],
    ["a companion's is kept by name", next, "cloud-hypervisor", ch("v44.0"), "v44.0"],
    ["a companion staged without one has none", next, "virtiofsd", null, null],
    ["a name that is also an object's property is no member", next, "toString", null, null],
    ["nothing staged", null, "kata-containers", null, null],
    ["staging that failed stages no member", { files: {} }, "kata-containers", null, null],
  ])("%s", (_, nextBoot, member, file, version) => {
    expect(stagedOf(nextBoot, member)).toBe(file);
    expect(stagedVersion(nextBoot, member)).toBe(version);
  });
});

describe("rollbackTargets", () => {
  const kata = (over: Partial<RollbackMember> = {}): RollbackMember => ({
    name: "kata-containers",
    active: k("3.32.0"),
    previous: k("3.30.0"),
    images: [
      { file: k("3.30.0"), version: "3.30.0" },
      { file: k("3.32.0"), version: "3.32.0" },
    ],
    previousRefused: null,
    ...over,
  });
  const hv = (over: Partial<RollbackMember> = {}): RollbackMember => ({
    name: "cloud-hypervisor",
    active: ch("41.0"),
    previous: ch("40.0"),
    images: [
      { file: ch("40.0"), version: "40.0" },
      { file: ch("41.0"), version: "41.0" },
    ],
    previousRefused: null,
    ...over,
  });
  type Row = [string, RollbackMember[], string[] | null, Record<string, Target | null> | string];
  it.each<Row>([
    ["the only member goes back", [kata()], null, { "kata-containers": stored(k("3.30.0"), "3.30.0") }],
    [
      "without a lastSwitch record every member goes back",
      [kata(), hv()],
      null,
      { "kata-containers": stored(k("3.30.0"), "3.30.0"), "cloud-hypervisor": stored(ch("40.0"), "40.0") },
    ],
    [
      "a member the last switch did not move stays where it is",
      [kata(), hv()],
      ["kata-containers"],
      { "kata-containers": stored(k("3.30.0"), "3.30.0"), "cloud-hypervisor": stored(ch("41.0"), "41.0") },
    ],
    [
      "a member with nothing active and not moved stays without a target",
      [kata(), hv({ active: null, previous: null })],
      null,
      { "kata-containers": stored(k("3.30.0"), "3.30.0"), "cloud-hypervisor": null },
    ],
    [
      "a previous image that is gone is refused",
      [kata({ images: [] })],
      null,
      `previous image ${k("3.30.0")} is no longer in the store`,
    ],
    [
      "a previous image the host cannot take is refused with the reasons",
      [kata({ previousRefused: ["withdrawn by the publisher"] })],
      null,
      `previous image ${k("3.30.0")} does not qualify for this host: withdrawn by the publisher`,
    ],
    ["nothing before the last switch: refused", [kata({ previous: null })], null, "no previous image to roll back to"],
    [
      "the previous image is the active one: refused",
      [kata({ previous: k("3.32.0") })],
      null,
      "no previous image to roll back to",
    ],
    ["the last switch moved nobody: refused", [kata(), hv()], [], "no previous image to roll back to"],
  ])("%s", (_, members, lastSwitch, expected) => {
    const decision = rollbackTargets(members, lastSwitch);
    if (typeof expected === "string") {
      expect(decision.ok).toBe(false);
      if (!decision.ok) expect(decision.error.message).toBe(expected);
    } else {
      expect(decision.ok).toBe(true);
      if (decision.ok) expect(Object.fromEntries(decision.targets)).toEqual(expected);
    }
  });

  it.each<[string, RollbackMember, string]>([
    ["gone", kata({ images: [] }), "rollback-refused"],
    ["disqualified", kata({ previousRefused: ["x"] }), "incompatible"],
    ["nothing to go back to", kata({ previous: null }), "rollback-refused"],
  ])("a refusal because %s carries its code", (_, member, code) => {
    const decision = rollbackTargets([member], null);
    expect(decision.ok ? null : decision.error.code).toBe(code);
  });
});

describe("mergeHolds", () => {
  it.each<[string, FilesByMember, FilesByMember, FilesByMember, FilesByMember]>([
    ["adds to nothing", {}, { kata: ["a"] }, {}, { kata: ["a"] }],
    [
      "keeps the order first held, without repeats",
      { kata: ["a", "b"] },
      { kata: ["b", "c"] },
      {},
      { kata: ["a", "b", "c"] },
    ],
    ["lifts what is released", { kata: ["a", "b"] }, { kata: ["c"] }, { kata: ["a"] }, { kata: ["b", "c"] }],
    ["drops a member left with nothing", { kata: ["a"], ch: ["x"] }, {}, { ch: ["x"] }, { kata: ["a"] }],
    ["a release of what was never held changes nothing", { kata: ["a"] }, {}, { ch: ["x"] }, { kata: ["a"] }],
    ["members are kept apart", { kata: ["a"] }, { ch: ["a"] }, {}, { kata: ["a"], ch: ["a"] }],
  ])("%s", (_, held, add, release, expected) => {
    expect(mergeHolds(held, add, release)).toEqual(expected);
  });
});

describe("holdsAfterRollback", () => {
  it.each<[string, Record<string, string>, { name: string; active: string | null }[], FilesByMember, FilesByMember]>([
    [
      "holds what was left and releases what was taken",
      { kata: k("3.32.0") },
      [{ name: "kata", active: k("3.30.0") }],
      { kata: [k("3.32.0")] },
      { kata: [k("3.30.0")] },
    ],
    ["a member that did not move is neither", { kata: k("3.32.0") }, [{ name: "kata", active: k("3.32.0") }], {}, {}],
    ["a member with nothing active before is neither", {}, [{ name: "kata", active: k("3.30.0") }], {}, {}],
    [
      "a member rolled back to nothing releases nothing",
      { ch: ch("41.0") },
      [{ name: "ch", active: null }],
      { ch: [ch("41.0")] },
      {},
    ],
  ])("%s", (_, before, after, hold, release) => {
    expect(holdsAfterRollback(new Map(Object.entries(before)), after)).toEqual({ hold, release });
  });
});

describe("holdsAfterFailedSwitch", () => {
  it.each<[string, LinkMove[], FilesByMember]>([
    [
      "holds every image the switch moved to",
      [
        { member: "kata", to: "b", from: "a" },
        { member: "ch", to: "y", from: null },
      ],
      { kata: ["b"], ch: ["y"] },
    ],
    ["a re-merge holds nothing against its image", [{ member: "kata", to: "a", from: "a" }], {}],
  ])("%s", (_, changes, expected) => {
    expect(holdsAfterFailedSwitch(changes)).toEqual(expected);
  });
});

describe("switchRecord", () => {
  const WAITING = "2026-12-02T08:00:00.000Z";
  const before = { previous: { kata: k("3.28.0"), ch: ch("39.0") }, waitingSince: WAITING };
  it.each<[string, LinkMove[], ReturnType<typeof switchRecord>]>([
    [
      "Kata's previous image is what its link named; the wait for sandboxes is over",
      [{ member: "kata", to: k("3.32.0"), from: k("3.30.0") }],
      { previous: { kata: k("3.30.0"), ch: ch("39.0") }, lastSwitch: ["kata"], waitingSince: null },
    ],
    [
      "a companion's is kept by name, Kata's stays",
      [{ member: "ch", to: ch("41.0"), from: ch("40.0") }],
      { previous: { kata: k("3.28.0"), ch: ch("40.0") }, lastSwitch: ["ch"], waitingSince: null },
    ],
    [
      "a first activation has no previous image",
      [{ member: "kata", to: k("3.32.0"), from: null }],
      { previous: { kata: null, ch: ch("39.0") }, lastSwitch: ["kata"], waitingSince: null },
    ],
    [
      "a re-merge moves nobody, and ends no wait",
      [{ member: "kata", to: k("3.30.0"), from: k("3.30.0") }],
      { previous: { kata: k("3.30.0"), ch: ch("39.0") }, lastSwitch: [], waitingSince: WAITING },
    ],
    [
      "a set switch records every member it moved",
      [
        { member: "kata", to: k("3.32.0"), from: k("3.30.0") },
        { member: "ch", to: ch("41.0"), from: ch("40.0") },
      ],
      { previous: { kata: k("3.30.0"), ch: ch("40.0") }, lastSwitch: ["kata", "ch"], waitingSince: null },
    ],
    [
      "a member switched for the first time is added",
      [{ member: "virtiofsd", to: "virtiofsd-1.0-x86-64.raw", from: null }],
      {
        previous: { kata: k("3.28.0"), ch: ch("39.0"), virtiofsd: null },
        lastSwitch: ["virtiofsd"],
        waitingSince: null,
      },
    ],
  ])("%s", (_, changes, expected) => {
    expect(switchRecord(before, changes)).toEqual(expected);
    // The state it was given is not changed.
    expect(before.previous).toEqual({ kata: k("3.28.0"), ch: ch("39.0") });
  });
});

describe("deferredTargets", () => {
  const target = (file: string, version: string): Target => stored(file, version);
  it.each<[string, { active: string | null; stored: string[] }, Target | null, Record<string, string>]>([
    [
      "a stored target that is not active is deferred",
      { active: k("3.30.0"), stored: [k("3.30.0"), k("3.32.0")] },
      target(k("3.32.0"), "3.32.0"),
      { kata: k("3.32.0") },
    ],
    ["the active target is not", { active: k("3.32.0"), stored: [k("3.32.0")] }, target(k("3.32.0"), "3.32.0"), {}],
    [
      "a target not stored yet is not",
      { active: k("3.30.0"), stored: [k("3.30.0")] },
      target(k("3.32.0"), "3.32.0"),
      {},
    ],
    ["no target, nothing", { active: k("3.30.0"), stored: [k("3.30.0")] }, null, {}],
  ])("%s", (_, member, wanted, expected) => {
    const result = deferredTargets([{ name: "kata", primary: true, ...member }], new Map([["kata", wanted]]));
    expect(result.deferred).toEqual(expected);
    expect(result.heldBack).toEqual(
      Object.keys(expected).length === 0 ? [] : [{ member: "kata", version: wanted?.version, primary: true }],
    );
  });
});
