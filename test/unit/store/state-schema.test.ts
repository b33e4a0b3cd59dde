// state.json's schema as a pure decision: which texts are a usable state, and what is named when one is not.
import { describe, expect, it } from "vitest";
import { EMPTY_STATE, parseState } from "../../../src/store/state.ts";

const IMAGE = "kata-containers-3.32.0-x86-64.raw";
const OLD = "kata-containers-3.31.0-x86-64.raw";
const FAILURE = {
  file: IMAGE,
  version: "3.32.0",
  sha256: "a".repeat(64),
  code: "digest-mismatch",
  reason: "bytes do not match SHA256SUMS",
  attempts: 2,
  firstAt: "2026-12-02T06:00:00.000Z",
  lastAt: "2026-12-02T07:00:00.000Z",
  retryAt: "2026-12-02T09:00:00.000Z",
};
const OTHER_RELEASE = {
  file: "kata-containers-3.45.0-x86-64.raw",
  version: "3.45.0",
  sha256: "b".repeat(64),
  extensionRelease: "ID=flatcar\nVERSION_ID=4000.0.0\n",
};
const state = (fields: Record<string, unknown>): string => JSON.stringify({ ...EMPTY_STATE, ...fields });
/** A file as kata-sysextd wrote it before schema 2: Kata's rollback target and next-boot image apart. */
const V1_EMPTY = { ...EMPTY_STATE, schema: 1, previous: null, previousCompanions: {} };
const v1 = (fields: Record<string, unknown>): string => JSON.stringify({ ...V1_EMPTY, ...fields });
/** The configured [source] name: Kata's fields of a schema 1 file are its. */
const PRIMARY = "kata-containers";
const CH = "cloud-hypervisor-v53.0-x86-64.raw";
const CH_OLD = "cloud-hypervisor-v52.0-x86-64.raw";

describe("parseState refuses what kata-sysextd never writes, naming the field", () => {
  it.each([
    ["empty", "", "is not JSON"],
    ["truncated", state({ previous: { [PRIMARY]: IMAGE } }).slice(0, 40), "is not JSON"],
    ["garbage", "\u0000\u0001garbage", "is not JSON"],
    ["a list", "[]", "the file must be a JSON object"],
    ["null", "null", "the file must be a JSON object"],
    [
      "a newer schema",
      JSON.stringify({ schema: 7 }),
      "schema 7 is newer than this kata-sysextd reads (1 to 2): a newer kata-sysextd wrote it; run that version again",
    ],
    ["a schema that never was", JSON.stringify({ schema: 0 }), "schema must be 1 or 2, got 0"],
    ["a schema as text", JSON.stringify({ schema: "2" }), 'schema must be 1 or 2, got "2"'],
    ["no schema", JSON.stringify({ previous: null }), "schema must be 1 or 2"],
    ["switching of the wrong type", state({ switching: "yes" }), 'switching must be a list, got "yes"'],
    [
      "a switch record leaving the store",
      state({ switching: [{ member: "kata-containers", from: "../../../etc/passwd", to: IMAGE }] }),
      "switching[0].from must be a store file name",
    ],
    [
      "an absolute switch target",
      state({ switching: [{ member: "kata-containers", from: null, to: "/usr/lib/x.raw" }] }),
      "switching[0].to must be a store file name",
    ],
    [
      "previous outside the store",
      state({ previous: { [PRIMARY]: "../x.raw" } }),
      "previous.kata-containers must be a store file name",
    ],
    [
      "previous of the wrong type",
      state({ previous: { [PRIMARY]: 3 } }),
      "previous.kata-containers must be a store file name, got 3",
    ],
    ["previous not by member", state({ previous: IMAGE }), "previous must be an object by member name"],
    [
      "a companion's previous outside the store",
      state({ previous: { "cloud-hypervisor": "/x" } }),
      "previous.cloud-hypervisor must be a store file name",
    ],
    ["schema 1: previous outside the store", v1({ previous: "../x.raw" }), "previous must be a store file name"],
    ["schema 1: previous of the wrong type", v1({ previous: 3 }), "previous must be a store file name, got 3"],
    [
      "schema 1: a companion's previous outside the store",
      v1({ previousCompanions: { "cloud-hypervisor": "/x" } }),
      "previousCompanions.cloud-hypervisor must be a store file name",
    ],
    ["a member name with a slash", state({ held: { "a/b": [IMAGE] } }), "held key must be an extension name"],
    ["held not a list", state({ held: { "kata-containers": OLD } }), "held.kata-containers must be a list"],
    ["held outside the store", state({ held: { "kata-containers": ["../a"] } }), "held.kata-containers[0] must be"],
    ["deferred outside the store", state({ deferred: { "kata-containers": "a/b" } }), "deferred.kata-containers must"],
    [
      "a next boot file outside the store",
      state({ nextBoot: { flatcarVersion: "4650.0.0", files: { [PRIMARY]: "../../x" }, staged: true, reason: null } }),
      "nextBoot.files.kata-containers must be a store file name",
    ],
    [
      "a next boot without staged",
      state({ nextBoot: { flatcarVersion: "4650.0.0", files: {}, reason: "none" } }),
      "nextBoot.staged must be true or false",
    ],
    [
      "schema 1: a next boot file outside the store",
      v1({ nextBoot: { flatcarVersion: "4650.0.0", kata: "3.32.0", file: "../../x", staged: true, reason: null } }),
      "nextBoot.file must be a store file name",
    ],
    [
      "schema 1: a next boot without staged",
      v1({ nextBoot: { flatcarVersion: "4650.0.0", kata: null, file: null, reason: "none" } }),
      "nextBoot.staged must be true or false",
    ],
    [
      "schema 1: a next boot's version of the wrong type",
      v1({ nextBoot: { flatcarVersion: "4650.0.0", kata: 3, file: null, staged: false, reason: null } }),
      "nextBoot.kata must be a string, got 3",
    ],
    [
      "a next boot companion outside the store",
      state({ nextBoot: { flatcarVersion: "1", files: { ch: ".." }, staged: false, reason: null } }),
      "nextBoot.files.ch must be a store file name",
    ],
    [
      "schema 1: a next boot companion outside the store",
      v1({
        nextBoot: {
          flatcarVersion: "1",
          kata: null,
          file: null,
          staged: false,
          reason: null,
          companions: { ch: ".." },
        },
      }),
      "nextBoot.companions.ch must be a store file name",
    ],
    [
      "a next boot's skipped release without its reason",
      state({
        nextBoot: {
          flatcarVersion: "1",
          files: {},
          staged: false,
          reason: "none",
          skipped: { "kata-containers": [{ file: "k.raw", version: "1", retryAt: null }] },
        },
      }),
      "nextBoot.skipped.kata-containers[0].reason must be",
    ],
    [
      "a result nobody writes",
      state({ lastReconcile: { at: "2026-12-02T07:00:00Z", result: "great", error: null, remedy: null } }),
      'lastReconcile.result must be ok or failed or deferred, got "great"',
    ],
    [
      "a time that is none",
      state({ lastReconcile: { at: "yesterday", result: "ok", error: null, remedy: null } }),
      "lastReconcile.at must be an ISO-8601 time",
    ],
    ["lastSwitch of the wrong type", state({ lastSwitch: "kata-containers" }), "lastSwitch must be a list"],
    ["heldUnder of the wrong type", state({ heldUnder: { a: 1 } }), "heldUnder must be a string"],
    [
      "a failed candidate outside the store",
      state({ failedCandidates: { "kata-containers": [{ ...FAILURE, file: "../../x.raw" }] } }),
      "failedCandidates.kata-containers[0].file must be a store file name",
    ],
    [
      "a failed candidate without its digest",
      state({ failedCandidates: { "kata-containers": [{ ...FAILURE, sha256: "abc" }] } }),
      "failedCandidates.kata-containers[0].sha256 must be a SHA-256 in hex",
    ],
    [
      "a skipped candidate with a retry time that is none",
      state({ skipped: { "kata-containers": [{ file: IMAGE, version: "3.32.0", reason: "x", retryAt: "soon" }] } }),
      "skipped.kata-containers[0].retryAt must be an ISO-8601 time",
    ],
    [
      "an image for another release outside the store",
      state({ otherRelease: { "kata-containers": [{ ...OTHER_RELEASE, file: "../x.raw" }] } }),
      "otherRelease.kata-containers[0].file must be a store file name",
    ],
    [
      "an image for another release without its extension-release",
      state({ otherRelease: { "kata-containers": [{ ...OTHER_RELEASE, extensionRelease: undefined }] } }),
      "otherRelease.kata-containers[0].extensionRelease must be a string",
    ],
    [
      "an image for another release with a release file no image has",
      state({ otherRelease: { "kata-containers": [{ ...OTHER_RELEASE, extensionRelease: "x".repeat(70_000) }] } }),
      "otherRelease.kata-containers[0].extensionRelease must be an extension-release",
    ],
    ["waitingSince that is no time", state({ waitingSince: "soon" }), "waitingSince must be an ISO-8601 time"],
    [
      "a reboot request without its reason",
      state({ reboot: { since: "2026-12-02T07:00:00Z", sentinel: null } }),
      "reboot.reason must be a string",
    ],
    [
      "a reboot sentinel owned by nobody we know",
      state({
        reboot: { reason: "r", since: "2026-12-02T07:00:00Z", sentinel: { path: "/run/reboot-required", owner: "me" } },
      }),
      'reboot.sentinel.owner must be kata-sysextd or other, got "me"',
    ],
  ])("%s", (_, text, expected) => {
    const parsed = parseState(text, PRIMARY);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error).toContain(expected);
  });
});

describe("parseState reads what kata-sysextd writes, and older files with fewer fields", () => {
  const skipped = {
    "kata-containers": [
      {
        file: "kata-containers-3.33.0-x86-64.raw",
        version: "3.33.0",
        reason: "SHA-256 is a, SHA256SUMS says b",
        retryAt: "2026-12-01T08:00:00.000Z",
      },
    ],
  };
  const rest = {
    deferred: { "kata-containers": IMAGE },
    waitingSince: "2026-12-01T07:00:00.000Z",
    reboot: {
      reason: "Kata 3.32.0 is staged and activates at the next boot",
      since: "2026-12-01T08:00:00.000Z",
      sentinel: { path: "/run/reboot-required", owner: "kata-sysextd" },
    },
    held: { "kata-containers": [IMAGE] },
    heldUnder: "abc",
    lastReconcile: { at: "2026-12-02T07:00:00.000Z", result: "failed", error: "x", remedy: "y" },
    switching: [{ member: "kata-containers", from: OLD, to: IMAGE }],
    lastSwitch: ["kata-containers"],
    failedCandidates: { "kata-containers": [FAILURE] },
    skipped: { "kata-containers": [{ file: IMAGE, version: "3.32.0", reason: FAILURE.reason, retryAt: null }] },
    otherRelease: { "kata-containers": [OTHER_RELEASE] },
  };
  const full = {
    schema: 2,
    previous: { "kata-containers": OLD, "cloud-hypervisor": null },
    nextBoot: {
      flatcarVersion: "4650.0.0",
      files: { "kata-containers": IMAGE, "cloud-hypervisor": "cloud-hypervisor-48.0-x86-64.raw" },
      staged: true,
      reason: null,
      stagedOn: "4593.2.5",
      skipped,
    },
    ...rest,
  };
  const fullV1 = {
    schema: 1,
    previous: OLD,
    previousCompanions: { "cloud-hypervisor": null },
    nextBoot: {
      flatcarVersion: "4650.0.0",
      kata: "3.32.0",
      file: IMAGE,
      staged: true,
      reason: null,
      companions: { "cloud-hypervisor": "cloud-hypervisor-48.0-x86-64.raw" },
      stagedOn: "4593.2.5",
      skipped,
    },
    ...rest,
  };
  it.each([
    ["a full file", JSON.stringify(full), full],
    ["a full schema 1 file, migrated", JSON.stringify(fullV1), full],
    ["the empty state", JSON.stringify(EMPTY_STATE), EMPTY_STATE],
    ["only the schema (fields added later are empty)", '{"schema":2}', EMPTY_STATE],
    ["only schema 1 (fields added later are empty)", '{"schema":1}', EMPTY_STATE],
    [
      "a next boot from before stagedOn and skipped",
      state({ nextBoot: { flatcarVersion: "1.2.3", files: {}, staged: false, reason: "none" } }),
      {
        ...EMPTY_STATE,
        nextBoot: { flatcarVersion: "1.2.3", files: {}, staged: false, reason: "none", stagedOn: null, skipped: {} },
      },
    ],
    [
      "schema 1: a next boot from before companions, stagedOn and skipped",
      v1({ nextBoot: { flatcarVersion: "1.2.3", kata: null, file: null, staged: false, reason: "none" } }),
      {
        ...EMPTY_STATE,
        nextBoot: { flatcarVersion: "1.2.3", files: {}, staged: false, reason: "none", stagedOn: null, skipped: {} },
      },
    ],
    [
      "a last reconcile from before remedy",
      state({ lastReconcile: { at: "2026-12-02T07:00:00Z", result: "ok", error: null } }),
      { ...EMPTY_STATE, lastReconcile: { at: "2026-12-02T07:00:00Z", result: "ok", error: null, remedy: null } },
    ],
  ])("%s", (_, text, expected) => {
    expect(parseState(text, PRIMARY)).toEqual({ ok: true, value: expected });
  });

  it("a schema 2 file needs no primary to be read", () => {
    expect(parseState(JSON.stringify(full))).toEqual({ ok: true, value: full });
  });
});

describe("a schema 1 file is migrated on read: every member keyed by name, Kata under the configured name", () => {
  const nextV1 = { flatcarVersion: "4650.0.0", staged: true, reason: null, stagedOn: "4593.2.5" };
  const next = (files: Record<string, string>, over: Record<string, unknown> = {}) => ({
    ...nextV1,
    files,
    skipped: {},
    ...over,
  });
  it.each<[string, string, Record<string, unknown>, string?]>([
    ["Kata's rollback target, no companions", v1({ previous: OLD }), { previous: { [PRIMARY]: OLD } }],
    ["nothing to roll back to", v1({ previous: null }), { previous: {} }],
    [
      "with companions: each keeps its own, Kata's joins them",
      v1({ previous: OLD, previousCompanions: { "cloud-hypervisor": CH_OLD, virtiofsd: null } }),
      { previous: { "cloud-hypervisor": CH_OLD, virtiofsd: null, [PRIMARY]: OLD } },
    ],
    [
      "with companions, Kata never switched",
      v1({ previous: null, previousCompanions: { "cloud-hypervisor": CH_OLD } }),
      { previous: { "cloud-hypervisor": CH_OLD } },
    ],
    [
      "a next boot with Kata's file",
      v1({ nextBoot: { ...nextV1, kata: "3.32.0", file: IMAGE, companions: {} } }),
      { nextBoot: next({ [PRIMARY]: IMAGE }) },
    ],
    [
      "a next boot with Kata's file and a companion's",
      v1({ nextBoot: { ...nextV1, kata: "3.32.0", file: IMAGE, companions: { "cloud-hypervisor": CH } } }),
      { nextBoot: next({ "cloud-hypervisor": CH, [PRIMARY]: IMAGE }) },
    ],
    [
      "a next boot from before companions were staged",
      v1({ nextBoot: { ...nextV1, kata: "3.32.0", file: IMAGE } }),
      { nextBoot: next({ [PRIMARY]: IMAGE }) },
    ],
    [
      "a next boot without a file: nothing could be staged",
      v1({ nextBoot: { ...nextV1, kata: null, file: null, staged: false, reason: "no release", companions: {} } }),
      { nextBoot: next({}, { staged: false, reason: "no release" }) },
    ],
    ["no next boot", v1({ nextBoot: null }), { nextBoot: null }],
    [
      "Kata under another configured name",
      v1({
        previous: "kata-3.31.0-x86-64.raw",
        nextBoot: { ...nextV1, kata: "3.32.0", file: "kata-3.32.0-x86-64.raw" },
      }),
      { previous: { kata: "kata-3.31.0-x86-64.raw" }, nextBoot: next({ kata: "kata-3.32.0-x86-64.raw" }) },
      "kata",
    ],
  ])("%s", (_, text, fields, primary = PRIMARY) => {
    expect(parseState(text, primary)).toEqual({ ok: true, value: { ...EMPTY_STATE, ...fields } });
  });

  it("is read only knowing the primary: without it, a programming error, not a damaged file", () => {
    expect(() => parseState(v1({ previous: OLD }))).toThrow("primary member");
    expect(() =>
      parseState(v1({ nextBoot: { flatcarVersion: "1", kata: "3.32.0", file: IMAGE, staged: true } })),
    ).toThrow("primary member");
    // With no Kata entry to key, nothing needs the name.
    expect(parseState(v1({ previousCompanions: { "cloud-hypervisor": CH_OLD } }))).toEqual({
      ok: true,
      value: { ...EMPTY_STATE, previous: { "cloud-hypervisor": CH_OLD } },
    });
  });

  it("what it migrated to is written back as schema 2", () => {
    const parsed = parseState(v1({ previous: OLD, previousCompanions: { "cloud-hypervisor": CH_OLD } }), PRIMARY);
    if (!parsed.ok) throw new Error(parsed.error);
    const again = parseState(JSON.stringify(parsed.value));
    expect(again).toEqual(parsed);
    expect(JSON.parse(JSON.stringify(parsed.value))).not.toHaveProperty("previousCompanions");
    expect(parsed.value.schema).toBe(2);
  });
});

it("a member named __proto__ stays a plain key and changes no prototype", () => {
  const parsed = parseState(`{"schema":2,"held":{"__proto__":["${IMAGE}"]},"previous":{"__proto__":"${OLD}"}}`);
  if (!parsed.ok) throw new Error(parsed.error);
  expect(Object.hasOwn(parsed.value.held, "__proto__")).toBe(true);
  expect(Object.getPrototypeOf(parsed.value.held)).toBe(Object.prototype);
  expect(Object.entries(parsed.value.held)).toEqual([["__proto__", [IMAGE]]]);
  expect(Object.entries(parsed.value.previous)).toEqual([["__proto__", OLD]]);
  expect(Object.getPrototypeOf(parsed.value.previous)).toBe(Object.prototype);
});
