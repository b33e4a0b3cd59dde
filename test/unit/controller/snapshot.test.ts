// The status snapshot a pass leaves, every member alike: Kata (members[0]) and its companions are read the same
// way off the observation and state.json's per-member records.
import { describe, expect, it } from "vitest";
import type { JudgedImage, MemberView, Observed } from "../../../src/controller/observe.ts";
import type { PassOutcome } from "../../../src/controller/reconciler.ts";
import { initialStatus, statusAfterPass, withNextBoot, withRestingState } from "../../../src/controller/snapshot.ts";
import type { HostRelease } from "../../../src/release/os-release.ts";
import type { MemberSnapshot } from "../../../src/status.ts";
import { EMPTY_STATE, type NextBoot, type PersistedState } from "../../../src/store/state.ts";

const KATA = "kata-containers";
const CH = "cloud-hypervisor";
const file = (name: string, version: string) => `${name}-${version}-x86-64.raw`;
const STORE = "/var/lib/kata-sysextd/images";

function image(name: string, version: string, trust: "checksum" | "signature" = "checksum"): JudgedImage {
  const f = file(name, version);
  return {
    file: f,
    name,
    version,
    arch: "x86-64",
    sha256: "0".repeat(64),
    bytes: 1,
    trust,
    verifiedAt: "2026-12-02T07:00:00.000Z",
    extensionRelease: "ID=_any\n",
    kataConfigs: [],
    files: [],
    path: `${STORE}/${f}`,
    compatible: true,
    reasons: [],
  };
}

function view(name: string, active: string | null, versions: string[], merged = true): MemberView {
  return {
    name,
    link: active === null ? { kind: "absent" } : { kind: "store", file: file(name, active), target: "../x" },
    images: versions.map((v) => image(name, v, name === CH ? "signature" : "checksum")),
    merged,
  };
}

const HOST: HostRelease = {
  id: "flatcar",
  idLike: [],
  versionId: "4593.2.5",
  sysextLevel: "1.0",
  version: null,
  prettyName: null,
  values: {},
  problems: [],
};

const NEXT: NextBoot = {
  flatcarVersion: "4650.0.0",
  files: { [KATA]: file(KATA, "3.33.0"), [CH]: file(CH, "v54.0") },
  staged: true,
  reason: null,
  stagedOn: "4593.2.5",
  skipped: {},
};

const STATE: PersistedState = {
  ...EMPTY_STATE,
  previous: { [KATA]: file(KATA, "3.31.0"), [CH]: file(CH, "v52.0") },
  nextBoot: NEXT,
  held: { [CH]: [file(CH, "v55.0")] },
};

function observed(members: [MemberView, ...MemberView[]], state: PersistedState = STATE): Observed {
  return { host: HOST, arch: "x86-64", members, sandboxesRunning: 0, state, stateDamage: null };
}

const base = () =>
  initialStatus({
    version: "0",
    startedAt: "2026-12-02T07:00:00.000Z",
    root: "/",
    name: KATA,
    arch: "x86-64",
    host: null,
  });

const pass = (over: Partial<PassOutcome>): PassOutcome => ({
  result: "ok",
  error: null,
  observed: null,
  unconfirmed: null,
  ...over,
});

const snapshotAfter = (outcome: PassOutcome, from = base()) =>
  statusAfterPass({ base: from, outcome, at: "2026-12-02T08:00:00.000Z", preflight: null });

const BOTH = observed([
  view(KATA, "3.32.0", ["3.31.0", "3.32.0", "3.33.0"]),
  view(CH, "v53.0", ["v52.0", "v53.0", "v54.0"], false),
]);

describe("statusAfterPass", () => {
  it("reads every member alike off the observation and state.json's records by member name", () => {
    const members: MemberSnapshot[] = [
      {
        name: KATA,
        active: "3.32.0",
        previous: "3.31.0",
        nextBoot: "3.33.0",
        merged: true,
        held: [],
        image: `${STORE}/${file(KATA, "3.32.0")}`,
        trust: "checksum",
      },
      {
        name: CH,
        active: "v53.0",
        previous: "v52.0",
        nextBoot: "v54.0",
        merged: false,
        held: [file(CH, "v55.0")],
        image: `${STORE}/${file(CH, "v53.0")}`,
        trust: "signature",
      },
    ];
    const status = snapshotAfter(pass({ observed: BOTH, unconfirmed: "systemd-sysext 252 under --root" }));
    expect(status.members).toEqual(members);
    expect(status.limitation).toBe("systemd-sysext 252 under --root");
    expect(status.nextBoot).toEqual({ flatcarVersion: "4650.0.0", staged: true, reason: null, skipped: [] });
  });

  it.each<[string, PassOutcome, string]>([
    ["ok", pass({ observed: BOTH }), "idle"],
    ["failed with Kata active", pass({ result: "failed", observed: BOTH }), "degraded"],
    [
      "failed with nothing of Kata active",
      pass({ result: "failed", observed: observed([view(KATA, null, ["3.32.0"]), view(CH, "v53.0", ["v53.0"])]) }),
      "error",
    ],
    ["failed before it could look", pass({ result: "failed" }), "error"],
  ])("a pass that ended %s leaves the state %s", (_, outcome, state) => {
    expect(snapshotAfter(outcome).state).toBe(state);
  });

  it("a deferred pass shows what waits; a failed one keeps it, any other ends it", () => {
    const waiting = {
      members: [{ name: KATA, version: "3.33.0", file: file(KATA, "3.33.0") }],
      sandboxes: 1,
      since: "2026-12-02T07:30:00.000Z",
      rebootAt: "2026-12-03T07:30:00.000Z",
    };
    const deferred = snapshotAfter(pass({ result: "deferred", observed: BOTH, waiting }));
    expect(deferred).toMatchObject({ waiting, state: "idle" });
    expect(snapshotAfter(pass({ result: "failed", observed: BOTH }), deferred).waiting).toEqual(waiting);
    expect(snapshotAfter(pass({ observed: BOTH }), deferred).waiting).toBeNull();
  });

  it("a rejected configuration or a lost state file leaves the daemon degraded after a good pass, until it is over", () => {
    const rejected = { at: "2026-12-02T07:59:00.000Z", code: "config-invalid", message: "m", remedy: null };
    const status = snapshotAfter(pass({ observed: BOTH }), { ...base(), configRejected: rejected });
    expect(status).toMatchObject({ configRejected: rejected, state: "degraded" });
    expect(withRestingState({ ...status, configRejected: null }).state).toBe("idle");
    const damage = { movedTo: "/var/lib/kata-sysextd/state.json.corrupt-x", remedy: "remove it" };
    const damaged = snapshotAfter(pass({ observed: { ...BOTH, stateDamage: damage } }));
    expect(damaged.state).toBe("degraded");
    expect(withRestingState({ ...damaged, stateDamage: null }).state).toBe("idle");
    // A pass under way keeps its step; a failed one keeps the host degraded whatever else is over.
    expect(withRestingState({ ...damaged, stateDamage: null, state: "fetching" }).state).toBe("fetching");
    const failed = snapshotAfter(pass({ result: "failed", observed: { ...BOTH, stateDamage: damage } }));
    expect(withRestingState({ ...failed, stateDamage: null }).state).toBe("degraded");
  });

  it("a pass that ended before it could look knows nothing active, for every member, and keeps the holds", () => {
    const seen = snapshotAfter(pass({ observed: BOTH }));
    const status = snapshotAfter(pass({ result: "failed" }), seen);
    expect(status.members.map((m) => [m.name, m.active, m.previous, m.nextBoot, m.merged, m.image, m.held])).toEqual([
      [KATA, null, null, null, false, null, []],
      [CH, null, null, null, false, null, [file(CH, "v55.0")]],
    ]);
    expect(status.nextBoot).toBeNull();
  });

  it("a member never switched has no previous image; one whose image left the store shows none either", () => {
    const state = { ...STATE, previous: { [KATA]: file(KATA, "3.20.0") }, nextBoot: null };
    const status = snapshotAfter(
      pass({ observed: observed([view(KATA, "3.32.0", ["3.32.0"]), view(CH, "v53.0", ["v53.0"])], state) }),
    );
    expect(status.members.map((m) => [m.name, m.previous, m.nextBoot])).toEqual([
      [KATA, null, null],
      [CH, null, null],
    ]);
  });
});

describe("withNextBoot", () => {
  const seen = snapshotAfter(pass({ observed: observed(BOTH.members, { ...STATE, nextBoot: null }) }));
  it.each<[string, NextBoot | null, (string | null)[], boolean | null]>([
    ["staged: each member's version, read off its file's name", NEXT, ["3.33.0", "v54.0"], true],
    ["staged for Kata alone", { ...NEXT, files: { [KATA]: file(KATA, "3.33.0") } }, ["3.33.0", null], true],
    ["nothing could be staged", { ...NEXT, files: {}, staged: false, reason: "no release" }, [null, null], false],
    ["forgotten", null, [null, null], null],
  ])("%s", (_, next, versions, staged) => {
    const status = withNextBoot(seen, next);
    expect(status.members.map((m) => m.nextBoot)).toEqual(versions);
    expect(status.nextBoot?.staged ?? null).toBe(staged);
    // Nothing else of a member changes.
    expect(status.members.map(({ nextBoot: _n, ...m }) => m)).toEqual(seen.members.map(({ nextBoot: _n, ...m }) => m));
  });
});
