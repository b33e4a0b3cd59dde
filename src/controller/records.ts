// What the controller remembers in state.json between passes: holds, failed candidates, what a decision left out,
// the reboot it asks for, how the last pass ended. Every write is a read-modify-write through the one StateStore;
// what to write is decided by the pure functions in decisions.ts, candidates.ts and reboot.ts.
import { sentinelLine } from "../cluster/reboot-sentinel.ts";
import type { Config } from "../config/schema.ts";
import { asKataError, type KataError } from "../errors.ts";
import { FetchError } from "../fetch/http.ts";
import { MessageId } from "../log/logger.ts";
import type { Target } from "../model.ts";
import { sha256Hex } from "../sha256.ts";
import type { NextBoot, PersistedState, RebootRequest } from "../store/state.ts";
import { blamesCandidate, rememberFailure } from "./candidates.ts";
import { type CandidateRecords, skippedByMember } from "./decide.ts";
import { type FilesByMember, mergeHolds } from "./decisions.ts";
import type { ReconcilerDeps } from "./deps.ts";
import type { Observed } from "./observe.ts";

export type RecordsDeps = Pick<ReconcilerDeps, "state" | "log" | "clock" | "config" | "reboot">;

export class Records {
  private readonly deps: RecordsDeps;

  constructor(deps: RecordsDeps) {
    this.deps = deps;
  }

  /** state.json's read-modify-write, one writer at a time (store/state.ts). */
  update(change: (state: PersistedState) => Partial<PersistedState>): Promise<PersistedState> {
    return this.deps.state.update(change);
  }

  /** Lifts the holds of earlier rollbacks (`kata-sysextctl refresh --release-holds`). */
  releaseHolds(): Promise<void> {
    return this.deps.state.releaseHolds();
  }

  /** Records what is staged for the next boot's OS release (daemon/next-boot.ts). */
  async recordNextBoot(next: NextBoot): Promise<void> {
    await this.update(() => ({ nextBoot: next }));
  }

  /** Where an unusable state file was moved aside, while it is there (store/state.ts, stateDamage). */
  stateDamage(): Promise<{ movedTo: string; remedy: string } | null> {
    return this.deps.state.damage();
  }

  /** Forgets a pending next boot: the update was booted, or update_engine no longer has one pending. */
  forgetNextBoot(): Promise<void> {
    return this.deps.state.clearNextBoot();
  }

  /**
   * Adds images to the holds (passes skip them until the configuration changes or the operator runs
   * `kata-sysextctl refresh --release-holds`), and lifts the holds on `release`.
   */
  async hold(files: FilesByMember, why: string, release: FilesByMember = {}): Promise<void> {
    const { held } = await this.update((state) => ({
      held: mergeHolds(state.held, files, release),
      heldUnder: configDigest(this.deps.config),
    }));
    this.deps.log.notice(
      `${why} holds ${Object.values(held).flat().join(", ") || "nothing"} until the configuration changes or \`kata-sysextctl refresh --release-holds\``,
    );
  }

  /** Holds made under another configuration than this pass runs with no longer apply (state.ts, heldUnder). */
  async liftHoldsOfAnotherConfig(observed: Observed): Promise<Observed> {
    const { held, heldUnder } = observed.state;
    if (Object.keys(held).length === 0 || heldUnder === null || heldUnder === configDigest(this.deps.config)) {
      return observed;
    }
    const state = await this.update(() => ({ held: {}, heldUnder: null }));
    this.deps.log.notice(
      `the configuration changed since ${Object.values(held).flat().join(", ")} were held; the holds are lifted`,
    );
    return { ...observed, state };
  }

  /**
   * A download that failed because of the candidate itself (candidates.ts, blamesCandidate) is remembered against
   * it and returned, so whoever fetched (`who`: a pass, or staging for a next release) falls back to the next
   * newest in policy; any other failure is rethrown.
   */
  async blame(member: string, target: Target, err: unknown, who: string): Promise<void> {
    const error = asKataError(err);
    const status = err instanceof FetchError ? err.status : null;
    const remote = target.remote;
    if (remote === null || !blamesCandidate({ ...error, status })) throw err;
    const failure = {
      file: target.file,
      version: target.version,
      sha256: remote.sha256,
      code: error.code,
      reason: error.message,
      ...(error.code === "fetch-too-large" ? { maxBytes: this.deps.config.fetch.maxBytes } : {}),
    };
    const now = this.deps.clock.now();
    const state = await this.update((s) => ({
      failedCandidates: {
        ...s.failedCandidates,
        [member]: rememberFailure(s.failedCandidates[member] ?? [], failure, now),
      },
    }));
    const record = state.failedCandidates[member]?.find((f) => f.file === target.file);
    this.deps.log.warning(
      `skipping ${target.file}: ${error.message}; ${record?.retryAt ? `tried again after ${record.retryAt}` : "those bytes are not tried again"}, and ${who} falls back to the next newest release in policy`,
      {
        KATA_SYSEXT_NAME: member,
        KATA_SYSEXT_VERSION: target.version,
        ERROR_CODE: error.code,
        ...(error.code === "digest-mismatch" ? { MESSAGE_ID: MessageId.verificationFailed } : {}),
      },
    );
  }

  /**
   * Keeps the failures and the images made for another release still worth remembering, and what this decision
   * left out (shown on /status).
   */
  async candidates(records: CandidateRecords | undefined): Promise<void> {
    if (records === undefined) return;
    await this.update((s) => {
      const failedCandidates = { ...s.failedCandidates };
      const otherRelease = { ...s.otherRelease };
      for (const [member, record] of records) {
        if (record.failures.length > 0) failedCandidates[member] = record.failures;
        else delete failedCandidates[member];
        if (record.otherRelease.length > 0) otherRelease[member] = record.otherRelease;
        else delete otherRelease[member];
      }
      return { failedCandidates, otherRelease, skipped: skippedByMember(records) };
    });
  }

  /**
   * Brings the reboot request (state.json, the sentinel, the journal) to `reason`, or withdraws it (null; `why`
   * says why). Trouble with the sentinel file is said and does not fail the pass: the request stands in /status.
   */
  async settleReboot(reason: string | null, why: string): Promise<RebootRequest | null> {
    const { log, clock } = this.deps;
    const sentinel = this.deps.reboot;
    const previous = (await this.deps.state.read()).reboot;
    let carrier = previous?.sentinel ?? null;
    try {
      carrier = await sentinel.apply(reason === null ? null : sentinelLine(reason));
    } catch (err) {
      log.warning(`the reboot sentinel ${sentinel.path ?? ""} could not be updated: ${asKataError(err).message}`, {
        REBOOT_SENTINEL: sentinel.path ?? "",
      });
    }
    const request: RebootRequest | null =
      reason === null ? null : { reason, since: previous?.since ?? clock.now().toISOString(), sentinel: carrier };
    if (JSON.stringify(request) !== JSON.stringify(previous)) {
      await this.update(() => ({ reboot: request }));
    }
    const fields = { REBOOT_SENTINEL: carrier?.path ?? "", REBOOT_SENTINEL_OWNER: carrier?.owner ?? "" };
    if (request !== null && request.reason !== previous?.reason) {
      const where =
        carrier === null
          ? "no sentinel is configured ([cluster] reboot_sentinel)"
          : carrier.owner === "kata-sysextd"
            ? `wrote ${carrier.path}`
            : `${carrier.path} was already there (another package asked for a reboot too): left as it is`;
      log.notice(`reboot requested: ${request.reason}; ${where}`, { MESSAGE_ID: MessageId.rebootRequested, ...fields });
    } else if (request === null && previous !== null) {
      const removed = previous.sentinel?.owner === "kata-sysextd" ? `; removed ${previous.sentinel.path}` : "";
      log.notice(`reboot request withdrawn, ${why}: ${previous.reason}${removed}`, fields);
    }
    return request;
  }

  /**
   * Records how the pass ended; read-modify-write, because a switch in this pass updated `previous`. A deferred
   * pass's `error` says what waits (the deferral already recorded what and since when).
   */
  async passEnded(
    last: { result: "ok" | "failed" | "deferred"; error: KataError | null },
    { waitEnded = false }: { waitEnded?: boolean } = {},
  ): Promise<void> {
    await this.update((state) => ({
      // A pass that reached its goal has done (or superseded) what an earlier one deferred to the next boot.
      deferred: last.result === "ok" ? {} : state.deferred,
      // Only a pass that asked the source knows the image waited for is active now; an offline one (the daemon's
      // look at start, a rollback) does not, and must not restart policy.max_wait_seconds.
      waitingSince: waitEnded ? null : state.waitingSince,
      lastReconcile: {
        at: this.deps.clock.now().toISOString(),
        result: last.result,
        error: last.error?.message ?? null,
        remedy: last.error?.remedy ?? null,
      },
    }));
  }
}

/**
 * Identifies what in a configuration decides which images may be taken (source, policy, companions), by content:
 * an edit elsewhere (log level, API address, intervals) says nothing about a rollback and leaves its holds.
 */
function configDigest(config: Config): string {
  const deciding = { source: config.source, policy: config.policy, companions: config.companions };
  return sha256Hex(JSON.stringify(deciding));
}
