import { describe, expect, it } from "vitest";
import {
  blamesCandidate,
  type CandidateInput,
  candidateKey,
  chooseCandidates,
  type PublishedCandidate,
  RETRY_BASE_MS,
  RETRY_MAX_MS,
  rememberFailure,
} from "../../../src/controller/candidates.ts";
import type { CandidateFailure, OtherReleaseImage } from "../../../src/model.ts";

const NOW = new Date("2026-12-01T12:00:00.000Z");
const at = (offsetMs: number) => new Date(NOW.getTime() + offsetMs).toISOString();
const digest = (c: string) => c.repeat(64);
const pub = (version: string, sha = "a"): PublishedCandidate => ({
  file: `kata-containers-${version}-x86-64.raw`,
  version,
  sha256: digest(sha),
});
const failed = (version: string, over: Partial<CandidateFailure> = {}, sha = "a"): CandidateFailure => ({
  file: `kata-containers-${version}-x86-64.raw`,
  version,
  sha256: digest(sha),
  code: "digest-mismatch",
  reason: "SHA-256 does not match SHA256SUMS",
  attempts: 1,
  firstAt: at(-60_000),
  lastAt: at(-60_000),
  retryAt: at(RETRY_BASE_MS - 60_000),
  ...over,
});
const file = (version: string) => `kata-containers-${version}-x86-64.raw`;

const base: CandidateInput<PublishedCandidate> = {
  published: [pub("3.30.0"), pub("3.32.0"), pub("3.33.0"), pub("3.40.0")],
  failures: [],
  quarantined: new Set(),
  held: new Set(),
  elsewhere: new Set(),
  known: [],
  maxBytes: 4096,
  now: NOW,
};

describe("chooseCandidates", () => {
  it.each<[string, Partial<CandidateInput<PublishedCandidate>>, { tryable: string[]; skipped: string[] }]>([
    [
      "nothing failed: every published image may be tried",
      {},
      {
        tryable: ["3.30.0", "3.32.0", "3.33.0", "3.40.0"],
        skipped: [],
      },
    ],
    [
      "a tampered newest release is skipped until its retry is due",
      { failures: [failed("3.33.0")] },
      { tryable: ["3.30.0", "3.32.0", "3.40.0"], skipped: ["3.33.0"] },
    ],
    [
      "its retry is due: tried again",
      { failures: [failed("3.33.0", { retryAt: at(-1) })] },
      { tryable: ["3.30.0", "3.32.0", "3.33.0", "3.40.0"], skipped: [] },
    ],
    [
      "republished with other bytes (a fixed upload): tried at once",
      { published: [pub("3.32.0"), pub("3.33.0", "b")], failures: [failed("3.33.0")] },
      { tryable: ["3.32.0", "3.33.0"], skipped: [] },
    ],
    [
      "failed inspection (never retried) and quarantined bytes",
      {
        failures: [failed("3.40.0", { code: "inspect-failed", retryAt: null })],
        quarantined: new Set([candidateKey(file("3.33.0"), digest("a"))]),
      },
      { tryable: ["3.30.0", "3.32.0"], skipped: ["3.33.0", "3.40.0"] },
    ],
    [
      "quarantine of other bytes under the same name does not block a republished file",
      { published: [pub("3.33.0", "c")], quarantined: new Set([candidateKey(file("3.33.0"), digest("a"))]) },
      { tryable: ["3.33.0"], skipped: [] },
    ],
    [
      "held and stored-for-another-release images are left out without counting as failures",
      { held: new Set([file("3.40.0")]), elsewhere: new Set([candidateKey(file("3.33.0"), digest("a"))]) },
      { tryable: ["3.30.0", "3.32.0"], skipped: [] },
    ],
    [
      "over a cap the operator has since raised: tried at once",
      { failures: [failed("3.40.0", { code: "fetch-too-large", maxBytes: 1024 })] },
      { tryable: ["3.30.0", "3.32.0", "3.33.0", "3.40.0"], skipped: [] },
    ],
    [
      "over the cap still in force (or a lowered one): skipped until its retry is due",
      {
        failures: [
          failed("3.40.0", { code: "fetch-too-large", maxBytes: 4096 }),
          failed("3.33.0", { code: "fetch-too-large", maxBytes: 8192 }),
        ],
      },
      { tryable: ["3.30.0", "3.32.0"], skipped: ["3.33.0", "3.40.0"] },
    ],
    [
      "digest case does not matter",
      { failures: [failed("3.33.0", { sha256: digest("A") })] },
      { tryable: ["3.30.0", "3.32.0", "3.40.0"], skipped: ["3.33.0"] },
    ],
  ])("%s", (_title, input, want) => {
    const choice = chooseCandidates({ ...base, ...input });
    expect(choice.tryable.map((c) => c.version)).toEqual(want.tryable);
    expect(choice.skipped.map((c) => c.version)).toEqual(want.skipped);
    for (const s of choice.skipped) expect(s.reason.length).toBeGreaterThan(0);
  });

  it("forgets failures of files no longer published, or published with other bytes", () => {
    const kept = failed("3.32.0");
    const choice = chooseCandidates({
      ...base,
      published: [pub("3.32.0"), pub("3.33.0", "b")],
      failures: [kept, failed("3.33.0"), failed("3.10.0")],
    });
    expect(choice.failures).toEqual([kept]);
  });
});

describe("images made for another release", () => {
  const other = (version: string, sha = "a"): OtherReleaseImage => ({
    file: file(version),
    version,
    sha256: digest(sha),
    extensionRelease: "ID=flatcar\nVERSION_ID=4000.0.0\n",
  });
  it.each<[string, Partial<CandidateInput<PublishedCandidate>>, { tryable: string[]; remembered: string[] }]>([
    [
      "remembered and still published with the same bytes: kept in mind, and skipped where it cannot merge",
      { known: [other("3.40.0")], elsewhere: new Set([candidateKey(file("3.40.0"), digest("a"))]) },
      { tryable: ["3.30.0", "3.32.0", "3.33.0"], remembered: ["3.40.0"] },
    ],
    [
      "remembered, and the release it is for is the one decided for: tried (kept in mind all the same)",
      { known: [other("3.40.0")] },
      { tryable: ["3.30.0", "3.32.0", "3.33.0", "3.40.0"], remembered: ["3.40.0"] },
    ],
    [
      "republished with other bytes: those are tried, the old ones forgotten",
      {
        published: [pub("3.32.0"), pub("3.40.0", "b")],
        known: [other("3.40.0")],
        elsewhere: new Set([candidateKey(file("3.40.0"), digest("a"))]),
      },
      { tryable: ["3.32.0", "3.40.0"], remembered: [] },
    ],
    [
      "no longer published: forgotten",
      { published: [pub("3.32.0")], known: [other("3.40.0"), other("3.41.0")] },
      { tryable: ["3.32.0"], remembered: [] },
    ],
  ])("%s", (_title, input, want) => {
    const choice = chooseCandidates({ ...base, ...input });
    expect(choice.tryable.map((c) => c.version)).toEqual(want.tryable);
    expect(choice.otherRelease.map((c) => c.version)).toEqual(want.remembered);
    // Not a failure: nothing to retry, nothing on the skipped list.
    expect(choice.skipped).toEqual([]);
    expect(choice.failures).toEqual([]);
  });
});

describe("rememberFailure", () => {
  const tampered = {
    file: file("3.33.0"),
    version: "3.33.0",
    sha256: digest("a"),
    code: "digest-mismatch" as const,
    reason: "bad bytes",
  };

  it.each<[string, CandidateFailure[], number, string | null]>([
    ["first failure: retried after the base delay", [], 1, at(RETRY_BASE_MS)],
    ["second failure: twice as long", [failed("3.33.0", { attempts: 1 })], 2, at(2 * RETRY_BASE_MS)],
    ["many failures: capped", [failed("3.33.0", { attempts: 20 })], 21, at(RETRY_MAX_MS)],
    ["a failure of other bytes starts over", [failed("3.33.0", { attempts: 5 }, "b")], 1, at(RETRY_BASE_MS)],
  ])("%s", (_title, before, attempts, retryAt) => {
    const after = rememberFailure(before, tampered, NOW);
    const record = after.find((f) => f.sha256 === digest("a"));
    expect(record).toMatchObject({ attempts, retryAt, lastAt: NOW.toISOString(), reason: "bad bytes" });
    expect(after.filter((f) => f.sha256 === digest("a"))).toHaveLength(1);
  });

  it("keeps the first failure's time and never retries bytes that failed inspection", () => {
    const before = [failed("3.33.0", { firstAt: at(-5000) })];
    const [record] = rememberFailure(before, { ...tampered, code: "inspect-failed" }, NOW);
    expect(record).toMatchObject({ firstAt: at(-5000), attempts: 2, retryAt: null });
  });
});

describe("blamesCandidate", () => {
  it.each<[string, Parameters<typeof blamesCandidate>[0], boolean]>([
    ["digest mismatch", { code: "digest-mismatch" }, true],
    ["failed inspection", { code: "inspect-failed" }, true],
    ["bigger than fetch.max_bytes", { code: "fetch-too-large" }, true],
    ["listed but 404", { code: "fetch-http-status", status: 404 }, true],
    ["listed but 410", { code: "fetch-http-status", status: 410 }, true],
    ["server error: the pass fails, nothing is blamed", { code: "fetch-http-status", status: 503 }, false],
    ["network trouble", { code: "fetch-failed" }, false],
    ["timeout", { code: "fetch-timeout" }, false],
    ["our disk is full", { code: "disk-full" }, false],
  ])("%s", (_title, error, blames) => {
    expect(blamesCandidate(error)).toBe(blames);
  });
});
