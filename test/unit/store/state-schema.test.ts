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
const state = (fields: Record<string, unknown>): string => JSON.stringify({ ...EMPTY_STATE, ...fields });

describe("parseState refuses what kata-sysextd never writes, naming the field", () => {
  it.each([
    ["empty", "", "is not JSON"],
    ["truncated", state({ previous: IMAGE }).slice(0, 40), "is not JSON"],
    ["garbage", "\u0000\u0001garbage", "is not JSON"],
    ["a list", "[]", "the file must be a JSON object"],
    ["null", "null", "the file must be a JSON object"],
    ["another schema", JSON.stringify({ schema: 7 }), "schema must be 1, got 7"],
    ["no schema", JSON.stringify({ previous: null }), "schema must be 1"],
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
    ["previous outside the store", state({ previous: "../x.raw" }), "previous must be a store file name"],
    ["previous of the wrong type", state({ previous: 3 }), "previous must be a store file name, got 3"],
    [
      "a companion's previous outside the store",
      state({ previousCompanions: { "cloud-hypervisor": "/x" } }),
      "previousCompanions.cloud-hypervisor must be a store file name",
    ],
    ["a member name with a slash", state({ held: { "a/b": [IMAGE] } }), "held key must be an extension name"],
    ["held not a list", state({ held: { "kata-containers": OLD } }), "held.kata-containers must be a list"],
    ["held outside the store", state({ held: { "kata-containers": ["../a"] } }), "held.kata-containers[0] must be"],
    ["deferred outside the store", state({ deferred: { "kata-containers": "a/b" } }), "deferred.kata-containers must"],
    [
      "a next boot file outside the store",
      state({ nextBoot: { flatcarVersion: "4650.0.0", kata: "3.32.0", file: "../../x", staged: true, reason: null } }),
      "nextBoot.file must be a store file name",
    ],
    [
      "a next boot without staged",
      state({ nextBoot: { flatcarVersion: "4650.0.0", kata: null, file: null, reason: "none" } }),
      "nextBoot.staged must be true or false",
    ],
    [
      "a next boot companion outside the store",
      state({
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
          kata: null,
          file: null,
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
    const parsed = parseState(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error).toContain(expected);
  });
});

describe("parseState reads what kata-sysextd writes, and older files with fewer fields", () => {
  const full = {
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
      skipped: {
        "kata-containers": [
          {
            file: "kata-containers-3.33.0-x86-64.raw",
            version: "3.33.0",
            reason: "SHA-256 is a, SHA256SUMS says b",
            retryAt: "2026-12-01T08:00:00.000Z",
          },
        ],
      },
    },
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
  };
  it.each([
    ["a full file", JSON.stringify(full), full],
    ["the empty state", JSON.stringify(EMPTY_STATE), EMPTY_STATE],
    ["only the schema (fields added later are empty)", '{"schema":1}', EMPTY_STATE],
    [
      "a next boot from before companions, stagedOn and skipped",
      state({ nextBoot: { flatcarVersion: "1.2.3", kata: null, file: null, staged: false, reason: "none" } }),
      {
        ...EMPTY_STATE,
        nextBoot: {
          flatcarVersion: "1.2.3",
          kata: null,
          file: null,
          staged: false,
          reason: "none",
          companions: {},
          stagedOn: null,
          skipped: {},
        },
      },
    ],
    [
      "a last reconcile from before remedy",
      state({ lastReconcile: { at: "2026-12-02T07:00:00Z", result: "ok", error: null } }),
      { ...EMPTY_STATE, lastReconcile: { at: "2026-12-02T07:00:00Z", result: "ok", error: null, remedy: null } },
    ],
  ])("%s", (_, text, expected) => {
    expect(parseState(text)).toEqual({ ok: true, value: expected });
  });
});

it("a member named __proto__ stays a plain key and changes no prototype", () => {
  const parsed = parseState(`{"schema":1,"held":{"__proto__":["${IMAGE}"]}}`);
  if (!parsed.ok) throw new Error(parsed.error);
  expect(Object.hasOwn(parsed.value.held, "__proto__")).toBe(true);
  expect(Object.getPrototypeOf(parsed.value.held)).toBe(Object.prototype);
  expect(Object.entries(parsed.value.held)).toEqual([["__proto__", [IMAGE]]]);
});
