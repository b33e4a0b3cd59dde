// Which published images a pass may try, and what it remembers when one fails: skip and remember. Pure: the
// reconciler reads the failures from state.json and writes back what these functions return; the table test
// is test/unit/controller/candidates.test.ts.
//
// A candidate that fails verification (its bytes do not match SHA256SUMS, it is bigger than fetch.max_bytes, the
// server has no such file) or inspection (it cannot merge here) is remembered by the digest SHA256SUMS published
// it with, and the pass falls back to the next newest in policy. A republished file (another digest) is tried at
// once; the same one again only after a backoff, or, after an inspection failure, never: those very bytes fail
// the same way every time (the quarantine keeps them aside). One over [fetch] max_bytes is tried at once when the
// operator raised the cap: the failure was the setting's as much as the image's.
//
// An image made for another release of this OS is no failure: it is stored (admit.ts), and may be pruned like any
// other (plan.ts). What it is stays remembered by its digest (OtherReleaseImage), so a pass does not fetch it
// again to learn its release anew, while the release it is for may still be booted (it is judged again for each).
import type { ErrorCode } from "../errors.ts";
import type { CandidateFailure, OtherReleaseImage, SkippedCandidate } from "../model.ts";

export interface PublishedCandidate {
  file: string;
  sha256: string;
  version: string;
}

export interface CandidateInput<E extends PublishedCandidate> {
  /** This member's images in SHA256SUMS, for this architecture. */
  published: E[];
  /** Failures remembered by earlier passes (state.json). */
  failures: CandidateFailure[];
  /** Keys (candidateKey) of published images whose bytes are in quarantine. */
  quarantined: ReadonlySet<string>;
  /** Files the operator rolled back from (held until the configuration changes). */
  held: ReadonlySet<string>;
  /**
   * Keys (candidateKey) of published images known to be made for another release of this OS than the one this
   * decision is for (stored, or remembered in `known`): not fetched again, not linked here.
   */
  elsewhere: ReadonlySet<string>;
  /** Images known to be made for another release of this OS: remembered (state.json) and those stored now. */
  known: OtherReleaseImage[];
  /** [fetch] max_bytes now: a candidate that was over a smaller cap is tried again at once. */
  maxBytes: number;
  now: Date;
}

export interface CandidateChoice<E extends PublishedCandidate> {
  /** What resolution may pick from, newest first as published. */
  tryable: E[];
  /** Left out because an earlier attempt failed (not held or stored ones: those are not failures). */
  skipped: SkippedCandidate[];
  /** The failures still worth remembering: those whose file is still published with the same digest. */
  failures: CandidateFailure[];
  /** The images made for another release still worth remembering: those still published with the same digest. */
  otherRelease: OtherReleaseImage[];
}

export const candidateKey = (file: string, sha256: string): string => `${file}@${sha256.toLowerCase()}`;

export function chooseCandidates<E extends PublishedCandidate>(input: CandidateInput<E>): CandidateChoice<E> {
  const now = input.now.getTime();
  const byKey = new Map(input.failures.map((f) => [candidateKey(f.file, f.sha256), f]));
  const tryable: E[] = [];
  const skipped: SkippedCandidate[] = [];
  const failures: CandidateFailure[] = [];
  const knownByKey = new Map(input.known.map((k) => [candidateKey(k.file, k.sha256), k]));
  const otherRelease: OtherReleaseImage[] = [];
  for (const entry of input.published) {
    const key = candidateKey(entry.file, entry.sha256);
    const failure = byKey.get(key);
    if (failure !== undefined) failures.push(failure);
    const known = knownByKey.get(key);
    if (known !== undefined && !otherRelease.includes(known)) otherRelease.push(known);
    if (input.held.has(entry.file) || input.elsewhere.has(key)) continue;
    if (input.quarantined.has(key)) {
      const reason = failure?.reason ?? "failed inspection before; those bytes are in quarantine";
      skipped.push({ file: entry.file, version: entry.version, reason, retryAt: null });
      continue;
    }
    const capRaised = failure?.maxBytes !== undefined && failure.maxBytes < input.maxBytes;
    if (failure !== undefined && !capRaised && (failure.retryAt === null || Date.parse(failure.retryAt) > now)) {
      skipped.push({ file: entry.file, version: entry.version, reason: failure.reason, retryAt: failure.retryAt });
      continue;
    }
    tryable.push(entry);
  }
  return { tryable, skipped, failures, otherRelease };
}

/** First wait after a failure; it doubles with every further failure of the same bytes, up to RETRY_MAX_MS. */
export const RETRY_BASE_MS = 60 * 60 * 1000;
export const RETRY_MAX_MS = 24 * 60 * 60 * 1000;

/** The codes that blame the candidate itself; anything else (network trouble, our disk) fails the pass. */
export function blamesCandidate(error: { code: ErrorCode; status?: number | null }): boolean {
  switch (error.code) {
    case "digest-mismatch":
    case "inspect-failed":
    case "fetch-too-large":
      return true;
    case "fetch-http-status":
      // Listed in SHA256SUMS but not served: the publisher's mistake, not a passing outage.
      return error.status === 404 || error.status === 410;
    default:
      return false;
  }
}

/** The failures after `failed` failed (again) at `now`, with its next retry time. */
export function rememberFailure(
  failures: CandidateFailure[],
  failed: { file: string; version: string; sha256: string; code: ErrorCode; reason: string; maxBytes?: number },
  now: Date,
): CandidateFailure[] {
  const key = candidateKey(failed.file, failed.sha256);
  const before = failures.find((f) => candidateKey(f.file, f.sha256) === key);
  const attempts = (before?.attempts ?? 0) + 1;
  const wait = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (attempts - 1));
  const record: CandidateFailure = {
    ...failed,
    sha256: failed.sha256.toLowerCase(),
    attempts,
    firstAt: before?.firstAt ?? now.toISOString(),
    lastAt: now.toISOString(),
    retryAt: failed.code === "inspect-failed" ? null : new Date(now.getTime() + wait).toISOString(),
  };
  return [...failures.filter((f) => candidateKey(f.file, f.sha256) !== key), record];
}
