// The reconcile loop: observe the host, decide the next step (plan.ts, pure), carry it out, observe again.
// One pass is what `kata-sysextd --once` runs; the daemon runs passes on start, on events and on a timer.
import type { VersionsResult } from "../api/schemas.ts";
import type { CanaryPhase, CanaryResult } from "../canary/canary.ts";
import type { CanaryProbe } from "../canary/probe.ts";
import type { Clock, Random } from "../clock.ts";
import type { ClusterReadiness } from "../cluster/nfd.ts";
import { type RebootSentinel, sentinelLine } from "../cluster/reboot-sentinel.ts";
import type { Config } from "../config/schema.ts";
import { KATA_ETC_CONFIG } from "../containerd/handlers.ts";
import type { RuntimeRegistration } from "../containerd/stage.ts";
import { asKataError, KataError } from "../errors.ts";
import { cleanupPartials } from "../fetch/download.ts";
import { FetchError } from "../fetch/http.ts";
import { sourceDirectory } from "../fetch/source.ts";
import type { Logger } from "../log/logger.ts";
import { MessageId } from "../log/logger.ts";
import type { Member, ReconcileEvent, Target, Targets } from "../model.ts";
import type { HostPaths } from "../paths.ts";
import { parseManifest } from "../release/manifest.ts";
import type { ReleaseMetadata } from "../release/metadata.ts";
import type { HostRelease } from "../release/os-release.ts";
import { compareVersions } from "../release/version.ts";
import { sha256Hex } from "../sha256.ts";
import type { PreflightSummary } from "../status.ts";
import { activeFile } from "../store/link.ts";
import { acquireLock, type Lock } from "../store/lock.ts";
import type { LinkChangeRecord, NextBoot, PersistedState, RebootRequest, StateStore } from "../store/state.ts";
import type { ImageStore, StoredImage } from "../store/store.ts";
import type { Sysext } from "../sysext/sysext.ts";
import { type ActivationDeps, type LinkChange, sharedFiles, switchImages } from "./activation.ts";
import { fetchAndAdmit } from "./admit.ts";
import { blamesCandidate, rememberFailure } from "./candidates.ts";
import {
  type CandidateRecords,
  type DecideContext,
  decideOffline,
  decideRemote,
  memberNamed,
  parsePublishedMetadata,
  qualifies,
  readKeptMetadata,
  type SkippedByMember,
  skippedByMember,
  Unresolvable,
} from "./decide.ts";
import {
  deferredTargets,
  type FilesByMember,
  holdsAfterFailedSwitch,
  holdsAfterRollback,
  type LinkMove,
  mergeHolds,
  previousOf,
  rollbackTargets,
  stagedOf,
  switchRecord,
} from "./decisions.ts";
import {
  countKataSandboxes,
  type JudgedImage,
  judge,
  type MemberView,
  type Observed,
  observe,
  primaryOf,
} from "./observe.ts";
import { type JointAction, nextAction, nextJointAction } from "./plan.ts";
import { decideReboot } from "./reboot.ts";
import { takeOver } from "./takeover.ts";
import { judgeRemote, skippedReleases } from "./versions.ts";

export interface ReconcilerDeps {
  paths: HostPaths;
  config: Config;
  arch: string;
  log: Logger;
  clock: Clock;
  random: Random;
  store: ImageStore;
  /** state.json: this Reconciler is its one writer in the process. */
  state: StateStore;
  /** Kata first, then its companion extensions; each with its own link and source. */
  members: Member[];
  sysext: Sysext;
  preflight?: () => Promise<PreflightSummary>;
  /** containerd registration; absent when [containerd] enabled = false. */
  runtime?: RuntimeRegistration;
  /** The reboot coordinator's sentinel file ([cluster] reboot_sentinel). */
  reboot: RebootSentinel;
  /** The canary, the last health stage of a switch; absent when [health] canary = false. */
  canary?: CanaryProbe;
  /** The node's readiness for the cluster (NFD's feature file); absent when [cluster] nfd_features_file = "". */
  cluster?: ClusterReadiness;
  /** Called whenever something /status shows changes. */
  onProgress?: (event: ReconcileEvent) => void;
}

export interface PassOutcome {
  result: "ok" | "failed" | "deferred";
  error: KataError | null;
  observed: Observed | null;
  /** Why the merge of the active image could not be confirmed here (the --root limitation), or null. */
  unconfirmed: string | null;
  /** The reboot asked of the cluster after this pass; absent when the pass left it as it was. */
  reboot?: RebootRequest | null;
  /** Run a pass again after this long: a wait for sandboxes runs out then (policy.max_wait_seconds). */
  requeueAfterMs?: number | null;
  /** Run a pass again once this is over: the Kata sandboxes that deferred the activation have ended. */
  waitFor?: "sandboxes" | null;
}

/** Bounds one pass: download, switch, prune and a spare; a plan that wants more is a bug, not a reason to spin. */
const MAX_STEPS = 6;

export class Reconciler {
  private readonly deps: ReconcilerDeps;
  private lastPreflight: PreflightSummary | null = null;
  /** The source's metadata for decisions without the network: as last fetched, or as fetched in this pass. */
  private offlineMetadata: ReleaseMetadata | undefined;
  /** Files the current pass wants, whose partial downloads are kept for resuming. */
  private wantedFiles: string[] = [];

  constructor(deps: ReconcilerDeps) {
    this.deps = deps;
  }

  private get primary(): Member {
    const primary = this.deps.members[0];
    if (primary === undefined) throw new Error("reconciler without members");
    return primary;
  }

  private get name(): string {
    return this.primary.name;
  }

  private member(name: string): Member {
    return memberNamed(this.deps, name);
  }

  private emit(event: ReconcileEvent): void {
    this.deps.onProgress?.(event);
  }

  /** Running Kata sandboxes, without observing the rest (the daemon looks every few seconds while it waits). */
  sandboxesRunning(): Promise<number> {
    return countKataSandboxes();
  }

  async observe(): Promise<Observed> {
    const { paths, arch, store, members, sysext, state } = this.deps;
    return observe({ paths, arch, store, members, sysext, state });
  }

  /** state.json's read-modify-write, its recoveries reported in this pass's journal. */
  private updateState(change: (state: PersistedState) => Partial<PersistedState>): Promise<PersistedState> {
    return this.deps.state.update(change);
  }

  /** Stored and published Kata versions, judged as a pass would (versions.ts); source trouble is reported, not thrown. */
  async versions(): Promise<VersionsResult> {
    const observed = await this.observe();
    const kata = primaryOf(observed);
    const active = activeFile(kata.link);
    const held = observed.state.held[this.deps.config.source.name] ?? [];
    const result: VersionsResult = {
      name: this.deps.config.source.name,
      arch: this.deps.arch,
      active: kata.images.find((i) => i.file === active)?.version ?? null,
      source: sourceDirectory(this.deps.config.source),
      local: kata.images.map((i) => ({
        version: i.version,
        image: i.path,
        active: i.file === active,
        held: held.includes(i.file),
      })),
      remote: [],
      remoteError: null,
      skipped: skippedReleases(observed.state.skipped),
    };
    try {
      const published = await this.primary.source.manifest();
      const manifest = parseManifest(published.text);
      // Withdrawals and constraints from the publisher count here as they do in a pass.
      const metadata = parsePublishedMetadata(published.metadata, this.deps.log);
      result.remote = manifest.entries.flatMap((entry) => {
        const stored = kata.images.find((i) => i.file === entry.file);
        const decision = judgeRemote({
          host: observed.host,
          arch: this.deps.arch,
          policy: this.deps.config.policy,
          name: this.deps.config.source.name,
          entry,
          metadata,
          held: held.includes(entry.file),
          stored,
        });
        return decision === null ? [] : [decision];
      });
    } catch (err) {
      const e = asKataError(err);
      result.remoteError = { code: e.code, message: e.message, remedy: e.remedy ?? null };
    }
    return result;
  }

  /** Lifts the holds of earlier rollbacks (`kata-sysextctl refresh --release-holds`). */
  releaseHolds(): Promise<void> {
    return this.deps.state.releaseHolds();
  }

  /** Records what is staged for the next boot's OS release (daemon/next-boot.ts). */
  async recordNextBoot(next: NextBoot): Promise<void> {
    await this.updateState(() => ({ nextBoot: next }));
  }

  /** Forgets a pending next boot: the update was booted, or update_engine no longer has one pending. */
  forgetNextBoot(): Promise<void> {
    return this.deps.state.clearNextBoot();
  }

  /** One full pass: resolve against the source, fetch and verify what is missing, activate, prune. */
  async reconcile(): Promise<PassOutcome> {
    return this.pass(async (observed) => {
      this.emit({ kind: "state", state: "resolving" });
      return this.resolveRemote(observed.host, observed);
    });
  }

  /** The boot path: no network; link a stored image that matches the booted OS, or unlink an incompatible one. */
  async boot(): Promise<PassOutcome> {
    return this.pass(async (observed) => ({ targets: this.resolveOffline(observed) }), {
      requireActive: false,
      decidesDownloads: false,
    });
  }

  /**
   * Undoes the last switch: every member it moved goes back to its image from before it, together and with the
   * same safety as an upgrade; members it did not move stay. The images rolled back from are held (skipped by
   * later passes), and the ones rolled back to are no longer held: the operator chose them.
   */
  async rollback(): Promise<PassOutcome> {
    const before = new Map<string, string>(); // member -> the file active when the rollback started
    return this.pass(
      async (observed) => {
        const members = observed.members.map((view) => {
          const member = this.member(view.name);
          const active = activeFile(view.link);
          if (active !== null) before.set(view.name, active);
          const previous = previousOf(observed.state, view.name, member.primary);
          const image = view.images.find((i) => i.file === previous);
          // The same verdict the boot path uses: merging is not enough, the policy must allow it on this host too.
          const verdict = image === undefined ? null : this.qualifies(member, observed.host, [image]);
          return {
            name: view.name,
            active,
            previous,
            images: view.images,
            previousRefused: verdict?.ok === false ? verdict.reasons : null,
          };
        });
        const decision = rollbackTargets(members, observed.state.lastSwitch);
        if (!decision.ok) throw new Refusal(decision.error);
        return { targets: decision.targets };
      },
      {
        decidesDownloads: false,
        // Still under the lock: a pass that took it right after this one must already see the holds.
        onSuccess: async (observed) => {
          const after = observed.members.map((m) => ({ name: m.name, active: activeFile(m.link) }));
          const { hold, release } = holdsAfterRollback(before, after);
          const now = observed.members.map((m) => activeFile(m.link) ?? `no ${m.name}`);
          this.deps.log.notice(`rolled back on request to ${now.join(", ")}`, { MESSAGE_ID: MessageId.rolledBack });
          await this.hold(hold, "rollback", release);
        },
      },
    );
  }

  /**
   * Adds images to the holds in state.json (passes skip them until the configuration changes or the operator
   * runs `kata-sysextctl refresh --release-holds`), and lifts the holds on `release`.
   */
  private async hold(files: FilesByMember, why: string, release: FilesByMember = {}) {
    const { held } = await this.updateState((state) => ({
      held: mergeHolds(state.held, files, release),
      heldUnder: configDigest(this.deps.config),
    }));
    this.deps.log.notice(
      `${why} holds ${Object.values(held).flat().join(", ") || "nothing"} until the configuration changes or \`kata-sysextctl refresh --release-holds\``,
    );
  }

  /**
   * Fetches, verifies and inspects the images a not-yet-booted Flatcar release needs, without activating them.
   * A candidate that fails verification or inspection is remembered and skipped as in a pass (blame), and the
   * next newest one for that release is tried. Returns the stored images, Kata first, with what was skipped; or
   * throws with the reasons none is compatible.
   */
  async fetchForRelease(nextOs: HostRelease): Promise<{ images: StoredImage[]; skipped: SkippedByMember }> {
    await this.deps.store.ensure();
    // The store lock, as for a pass: a hand-run --once must not sweep this download from under us.
    const lock = await acquireLock(this.deps.store.lockFile);
    try {
      const who = `staging for ${nextOs.id ?? "the OS"} ${nextOs.versionId ?? "?"}`;
      // Each failed candidate is one more round; a publisher's list bounds them, this bounds a bug.
      for (let round = 0; round < MAX_STEPS + 2 * this.deps.members.length; round++) {
        const { targets, candidates } = await this.resolveRemote(nextOs, await this.observe());
        const images: StoredImage[] = [];
        let failed = false;
        for (const member of this.deps.members) {
          const target = targets.get(member.name);
          if (target === undefined || target === null) continue;
          try {
            await this.download(member, target, nextOs);
          } catch (err) {
            await this.blame(member.name, target, err, who);
            failed = true;
            break;
          }
          const stored = await this.deps.store.get(target.file);
          if (stored === null) throw new KataError("store-failed", `${target.file} vanished from the store`);
          // Stored, but made for yet another release (admit.ts): deciding again passes it over, as a pass does.
          if (judge([stored], nextOs, member.name, this.deps.arch)[0]?.compatible !== true) {
            failed = true;
            break;
          }
          images.push(stored);
        }
        if (failed) continue;
        if (images[0]?.name !== this.name)
          throw new KataError("no-compatible-version", "no Kata version matches the next OS");
        return { images, skipped: skippedByMember(candidates) };
      }
      throw new KataError("internal", `${who} gave up after too many failed candidates`);
    } finally {
      await lock.release();
    }
  }

  private async pass(
    decide: (observed: Observed) => Promise<{ targets: Targets; candidates?: CandidateRecords }>,
    options: {
      requireActive?: boolean;
      onSuccess?: (observed: Observed) => Promise<void>;
      /**
       * Whether this pass knows which downloads are still wanted (it asked the source). A pass without the
       * network (boot, rollback) keeps every partial download for the next one that does, to resume.
       */
      decidesDownloads?: boolean;
    } = {},
  ): Promise<PassOutcome> {
    const requireActive = options.requireActive ?? true;
    const log = this.deps.log.with({ KATA_SYSEXT_NAME: this.name });
    let observed: Observed | null = null;
    let unconfirmed: string | null = null;
    let lock: Lock | null = null;
    try {
      await this.deps.store.ensure();
      lock = await acquireLock(this.deps.store.lockFile);
      await this.deps.store.sweep();
      await this.deps.state.sweep(log);
      for (const member of this.deps.members) {
        for (const name of await member.link.sweep()) log.info(`removed ${name}, left by a link switch cut short`);
      }
      for (const path of await this.deps.store.pruneQuarantine()) {
        log.info(`deleted the quarantined image ${path}; its .reason stays, so those bytes are not fetched again`);
      }
      observed = await this.observe();
      if (observed.state.switching !== null) observed = await this.undoInterruptedSwitch(observed.state.switching);
      observed = await this.liftHoldsOfAnotherConfig(observed);
      // A host set up the sysext-bakery way: its link is taken over before anything is decided (takeover.ts).
      if (options.decidesDownloads !== false) observed = await this.takeOverBakeryLinks(observed);
      this.offlineMetadata = await readKeptMetadata(this.deps.store);
      const wanted = (targets: Targets): string[] => [...targets.values()].flatMap((t) => (t === null ? [] : [t.file]));
      let decision = await decide(observed);
      await this.recordCandidates(decision.candidates);
      this.wantedFiles = wanted(decision.targets);
      for (let step = 0; step < MAX_STEPS + 2 * this.deps.members.length; step++) {
        const current = observed;
        const action = nextJointAction(
          current.members.map((view) => ({
            member: view.name,
            action: nextAction(this.planInput(current, view, decision.targets.get(view.name) ?? null)),
          })),
        );
        if (action === null) break;
        if (action.kind === "defer") {
          log.notice(`activation deferred: ${action.reason}`);
          const deferral = await this.deferActivation(current, decision.targets);
          return { result: "deferred", error: null, observed, unconfirmed, ...deferral };
        }
        const failed = await this.carryOutOrBlame(action, current);
        if (failed !== null) {
          // The candidate failed verification or inspection: remembered, and the same pass falls back to the
          // next newest in policy (each such download is a step, so the loop's bound holds).
          observed = await this.observe();
          decision = await decide(observed);
          await this.recordCandidates(decision.candidates);
          this.wantedFiles = wanted(decision.targets);
          continue;
        }
        unconfirmed = this.lastUnconfirmed ?? unconfirmed;
        observed = await this.observe();
        const downloaded = action.kind === "download" ? action.target.file : null;
        const admitted = observed.members.some((m) => m.images.some((i) => i.file === downloaded && i.compatible));
        if (downloaded !== null && !admitted) {
          // Stored, but made for another release of this OS (admit.ts): decide again, which passes it over (each
          // such download is a step, so the loop's bound holds). An image that did not make it into the store
          // ends the pass (it was quarantined).
          const stored = observed.members.some((m) => m.images.some((i) => i.file === downloaded));
          if (!stored) break;
          decision = await decide(observed);
          this.wantedFiles = wanted(decision.targets);
        }
      }
      const verdict = await this.verdict(observed, decision.targets, requireActive);
      if (verdict !== null) throw verdict;
      this.reportSkipped(observed, decision.candidates);
      await this.ensureRegistration(observed);
      await this.tellClusterWithoutCanary(observed);
      if (unconfirmed === null && this.deps.sysext.limitation !== null && !primaryOf(observed).merged) {
        unconfirmed = this.deps.sysext.limitation;
      }
      if (options.onSuccess !== undefined) {
        await options.onSuccess(observed);
        // What it recorded (a rollback's holds) belongs in the outcome, and so in /status.
        observed = await this.observe();
      }
      // What this pass wanted is active: no activation waits for a reboot any more.
      const reboot = await this.settleReboot(null, "what it was for is active or no longer wanted");
      await this.remember({ result: "ok", error: null }, { waitEnded: options.decidesDownloads !== false });
      return { result: "ok", error: null, observed, unconfirmed, reboot, requeueAfterMs: null };
    } catch (err) {
      const refused = err instanceof Refusal;
      const error = refused ? err.error : asKataError(err);
      if (err instanceof Unresolvable && lock !== null)
        await this.recordCandidates(err.candidates).catch(() => undefined);
      // Inspection failures carry the MESSAGE_ID where the image is quarantined (admit.ts); these two end here.
      const verification = error.code === "digest-mismatch" || error.code === "signature-invalid";
      if (refused) {
        // An answer to the operator, not a failure of the host: nothing changed.
        log.notice(`rollback refused: ${error.message}`, { ERROR_CODE: error.code, REMEDY: error.remedy ?? "" });
      } else {
        log.error(error.message, {
          ERROR_CODE: error.code,
          REMEDY: error.remedy ?? "",
          ...(verification ? { MESSAGE_ID: MessageId.verificationFailed } : {}),
        });
      }
      // A refusal is an answer to a request, not a pass that failed: the record of the last pass stays. Without
      // the lock the store and state.json belong to whoever holds it.
      if (!refused && lock !== null) await this.remember({ result: "failed", error }).catch(() => undefined);
      return { result: "failed", error, observed, unconfirmed };
    } finally {
      // Partial downloads of what this pass still wants stay for resuming; any other is stale.
      if (lock !== null && options.decidesDownloads !== false) {
        await cleanupPartials(this.deps.store.incomingDir, this.wantedFiles).catch(() => undefined);
      }
      await lock?.release();
      this.emit({ kind: "download", progress: null });
    }
  }

  /**
   * The daemon died inside a switch (kill -9, power loss): some links may name the new images without their
   * merge, containerd or health stages having run, and `previous` was not recorded yet. Put those links back and
   * merge the old set again; the pass then switches anew with every stage and its undo, and records `previous`.
   */
  private async undoInterruptedSwitch(changes: LinkChangeRecord[]): Promise<Observed> {
    for (const change of changes) {
      const member = this.deps.members.find((m) => m.name === change.member);
      if (member === undefined) continue;
      const link = await member.link.read();
      if (link.kind !== "store" || link.file !== change.to || change.from === change.to) continue;
      if (change.from === null) await member.link.remove();
      else await member.link.point(change.from);
    }
    const undone = changes.map((c) => `${c.to} back to ${c.from ?? "nothing"}`).join(", ");
    this.deps.log.warning(
      `a switch was interrupted (the daemon stopped inside it): ${undone}; the pass decides again from there`,
    );
    // Always: the links may have been put back already by the process that died (its undo ran, its refresh did
    // not), and what is merged must follow them. So must containerd's runtimes, which its stage may have moved.
    await this.deps.sysext.refresh();
    const observed = await this.observe();
    await this.ensureRegistration(observed);
    await this.updateState(() => ({ switching: null }));
    return observed;
  }

  /** The --root limitation note of the last step carried out by carryOutOrBlame. */
  private lastUnconfirmed: string | null = null;

  /**
   * Carries out one step. A download whose image fails verification or inspection is not the end of the pass:
   * the failure is remembered against the candidate (candidates.ts) and returned, so the pass can fall back.
   */
  private async carryOutOrBlame(action: Exclude<JointAction, { kind: "defer" }>, observed: Observed) {
    this.lastUnconfirmed = null;
    try {
      this.lastUnconfirmed = await this.carryOut(action, observed);
      return null;
    } catch (err) {
      if (action.kind !== "download") throw err;
      return this.blame(action.member, action.target, err, "this pass");
    }
  }

  /**
   * A download that failed because of the candidate itself (candidates.ts, blamesCandidate) is remembered against
   * it and returned, so whoever fetched (`who`: a pass, or staging for a next release) falls back to the next
   * newest in policy; any other failure is rethrown.
   */
  private async blame(member: string, target: Target, err: unknown, who: string) {
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
    const state = await this.updateState((s) => ({
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
    return failure;
  }

  /** Keeps the failures still worth remembering and what this decision left out (shown on /status). */
  private async recordCandidates(records: CandidateRecords | undefined): Promise<void> {
    if (records === undefined) return;
    await this.updateState((s) => {
      const failedCandidates = { ...s.failedCandidates };
      for (const [member, record] of records) {
        if (record.failures.length > 0) failedCandidates[member] = record.failures;
        else delete failedCandidates[member];
      }
      return { failedCandidates, skipped: skippedByMember(records) };
    });
  }

  /** A pass that ends on an image older than a skipped release says so, so nobody mistakes it for the newest. */
  private reportSkipped(observed: Observed, records: CandidateRecords | undefined): void {
    for (const view of observed.members) {
      const active = view.images.find((i) => view.link.kind === "store" && i.file === view.link.file);
      const newer = (records?.get(view.name)?.skipped ?? [])
        .filter((s) => active === undefined || compareVersions(s.version, active.version) > 0)
        .sort((a, b) => compareVersions(b.version, a.version));
      if (newer.length === 0) continue;
      this.deps.log.warning(
        `${view.name} ${active?.version ?? "none"} is active; newer releases were skipped: ${newer.map((s) => `${s.version} (${s.reason})`).join("; ")}`,
        { KATA_SYSEXT_NAME: view.name },
      );
    }
  }

  /** Null when the pass reached its goal; else the error that says what is missing. */
  private async verdict(observed: Observed, targets: Targets, requireActive: boolean): Promise<KataError | null> {
    for (const view of observed.members) {
      const member = this.member(view.name);
      const target = targets.get(view.name) ?? null;
      const active = activeFile(view.link);
      if (view.link.kind === "foreign") {
        return new KataError("activation-failed", view.link.detail, {
          remedy:
            view.link.target === null
              ? `a pass with the network takes the image over once SHA256SUMS vouches for it (kata-sysextctl refresh); or move ${member.link.path} away`
              : `remove ${member.link.path} (kata-sysextd manages it) and run the pass again`,
        });
      }
      if (target === null) {
        if (member.primary && active === null && requireActive) {
          return new KataError("no-compatible-version", "no compatible Kata image is available for this host");
        }
        continue;
      }
      if (active !== target.file) {
        const quarantined =
          target.remote !== null && (await this.deps.store.isQuarantined(target.file, target.remote.sha256));
        return new KataError(
          quarantined ? "inspect-failed" : "activation-failed",
          `${target.file} is not active${quarantined ? " (it failed inspection and was quarantined)" : ""}`,
        );
      }
    }
    return null;
  }

  private planInput(observed: Observed, view: MemberView, target: Target | null) {
    const primary = view.name === this.name;
    return {
      link: view.link,
      store: view.images.map((i) => ({ file: i.file, version: i.version, compatible: i.compatible })),
      merged: view.merged,
      mergeObservable: this.deps.sysext.limitation === null,
      target,
      sandboxesRunning: observed.sandboxesRunning,
      activation: this.deps.config.policy.activation,
      keep: this.deps.config.policy.keep,
      previous: previousOf(observed.state, view.name, primary),
      staged: stagedOf(observed.state.nextBoot, view.name, primary),
    };
  }

  /** Carries out one step; returns the --root limitation note when a switch could not confirm its merge. */
  private async carryOut(action: Exclude<JointAction, { kind: "defer" }>, observed: Observed): Promise<string | null> {
    switch (action.kind) {
      case "download":
        await this.download(this.member(action.member), action.target, observed.host);
        return null;
      case "switch": {
        this.emit({ kind: "state", state: "activating" });
        await this.deps.cluster?.withdraw("a switch starts");
        // Recorded before the first link moves: if the daemon dies inside the switch, the next pass finds it.
        await this.updateState(() => ({ switching: action.changes }));
        let result: Awaited<ReturnType<Reconciler["switch"]>>;
        try {
          result = await this.switch(action.changes, observed);
        } catch (err) {
          // Undone by its own stages: nothing is left half-way.
          await this.updateState(() => ({ switching: null }));
          throw err;
        }
        await this.updateState((state) => ({ ...switchRecord(state, action.changes, this.name), switching: null }));
        for (const change of action.changes) {
          const image = observed.members
            .find((m) => m.name === change.member)
            ?.images.find((i) => i.file === change.to);
          this.deps.log.notice(`activated ${change.to}`, {
            MESSAGE_ID: MessageId.imageActivated,
            KATA_SYSEXT_NAME: change.member,
            KATA_SYSEXT_VERSION: image?.version ?? "",
            KATA_SYSEXT_PREVIOUS: change.from ?? "",
          });
        }
        return result.unconfirmed;
      }
      case "remerge": {
        this.emit({ kind: "state", state: "activating" });
        await this.deps.cluster?.withdraw("a re-merge starts");
        const result = await this.switch([{ member: action.member, to: action.file, from: action.file }], observed);
        return result.unconfirmed;
      }
      case "unlink": {
        const member = this.member(action.member);
        // containerd must never point at a shim that is about to vanish: unregister first.
        if (member.primary) await this.deps.runtime?.unregister();
        await member.link.remove();
        await this.deps.sysext.refresh();
        this.deps.log.warning(`removed the active link of ${member.name}: ${action.reason}`, {
          KATA_SYSEXT_NAME: member.name,
        });
        return null;
      }
      case "prune":
        for (const file of action.files) await this.deps.store.remove(file);
        this.deps.log.info(`pruned ${action.files.join(", ")}`, { KATA_SYSEXT_NAME: action.member });
        return null;
    }
  }

  /** Holds the images a switch that did not happen was moving to; a re-merge says nothing against its image. */
  private holdTargets(changes: LinkMove[], why: string) {
    return this.hold(holdsAfterFailedSwitch(changes), why);
  }

  private async takeOverBakeryLinks(observed: Observed): Promise<Observed> {
    let moved = false;
    for (const view of observed.members) {
      const member = this.member(view.name);
      moved = (await takeOver(this.deps, member, view.link, observed.host, (e) => this.emit(e))) || moved;
    }
    return moved ? this.observe() : observed;
  }

  /** Holds made under another configuration than this pass runs with no longer apply (state.ts, heldUnder). */
  private async liftHoldsOfAnotherConfig(observed: Observed): Promise<Observed> {
    const { held, heldUnder } = observed.state;
    if (Object.keys(held).length === 0 || heldUnder === null || heldUnder === configDigest(this.deps.config)) {
      return observed;
    }
    const state = await this.updateState(() => ({ held: {}, heldUnder: null }));
    this.deps.log.notice(
      `the configuration changed since ${Object.values(held).flat().join(", ")} were held; the holds are lifted`,
    );
    return { ...observed, state };
  }

  /** The primary member's active image as the store describes it, or null. */
  private async activeImage(observed: Observed): Promise<StoredImage | null> {
    const file = activeFile(primaryOf(observed).link);
    return file === null ? null : this.deps.store.get(file);
  }

  /** containerd's Kata runtimes follow the primary image that is active now (stage.ts, ensure). */
  private async ensureRegistration(observed: Observed): Promise<void> {
    const runtime = this.deps.runtime;
    if (runtime === undefined) return;
    const active = await this.activeImage(observed);
    if (await runtime.ensure(active)) {
      this.deps.log.notice(
        `containerd's Kata runtime registration did not match ${active?.file ?? "the absence of an active Kata image"}, the base configuration or the presence of ${KATA_ETC_CONFIG}; rewrote it`,
      );
    }
  }

  private async switch(changes: LinkMove[], observed: Observed) {
    const log = this.deps.log;
    const linkChanges: LinkChange[] = [];
    for (const change of changes) {
      const to = await this.deps.store.get(change.to);
      if (to === null) throw new KataError("store-failed", `${change.to} is not in the store any more`);
      const member = this.member(change.member);
      linkChanges.push({ name: member.name, link: member.link, to, from: change.from, primary: member.primary });
    }
    // Every member's image once the switch is done, for the check that no two ship the same file.
    const after: StoredImage[] = [];
    for (const view of observed.members) {
      const changed = linkChanges.find((c) => c.name === view.name);
      const file = changed?.to.file ?? activeFile(view.link);
      const image = file === null ? null : await this.deps.store.get(file);
      if (image !== null) after.push(image);
    }
    const clashes = sharedFiles(after);
    if (clashes.length > 0) {
      // Refused before anything moved: no rollback to report. Held, so the next pass takes a set that does not
      // clash (an older one) instead of failing on this one forever.
      await this.holdTargets(changes, "the refused set");
      throw new KataError("activation-failed", `extensions ship the same files: ${clashes.join("; ")}`, {
        remedy: "two members of the set would overlay each other; pin versions that do not clash in [policy]",
      });
    }
    const deps: ActivationDeps = {
      paths: this.deps.paths,
      sysext: this.deps.sysext,
      log,
      preflight: this.deps.preflight,
      runtime: this.deps.runtime,
      canary: this.deps.canary === undefined ? undefined : (primary) => this.canaryStage(primary, observed),
    };
    // The health stage compares against the host as it is right before the switch: a verdict kept from an
    // earlier switch would blame the new image for trouble the host got into on its own since.
    if (this.deps.preflight !== undefined) {
      this.lastPreflight = await this.deps.preflight();
      this.emit({ kind: "preflight", summary: this.lastPreflight });
    }
    try {
      const result = await switchImages(deps, { changes: linkChanges, preflightBefore: this.lastPreflight });
      if (result.preflight !== null) {
        this.lastPreflight = result.preflight;
        this.emit({ kind: "preflight", summary: result.preflight });
      }
      return result;
    } catch (err) {
      const error = asKataError(err);
      const back = changes.map((c) => c.from ?? `no ${c.member} image`).join(", ");
      log.warning(`rolled back to ${back}: ${error.message}`, {
        MESSAGE_ID: MessageId.rolledBack,
        KATA_SYSEXT_NAME: changes.map((c) => c.member).join(","),
        ERROR_CODE: error.code,
      });
      // Held, or the next pass would switch to the same images and roll back again, restarting containerd
      // and re-merging each time.
      await this.holdTargets(changes, "the rollback after a failed activation");
      this.emit({ kind: "rolled-back" });
      throw error;
    }
  }

  /**
   * Without a canary the node is ready for the cluster once a pass reached its goal with Kata active (no handler
   * is proven, so none is labelled). With one, only a canary that passed says ready (runCanary).
   */
  private async tellClusterWithoutCanary(observed: Observed): Promise<void> {
    const cluster = this.deps.cluster;
    if (cluster === undefined || this.deps.canary !== undefined) return;
    const kata = primaryOf(observed);
    const active = activeFile(kata.link);
    const version = kata.images.find((i) => i.file === active)?.version ?? null;
    if (version === null) await cluster.withdraw("no Kata image is active");
    else await cluster.publish({ ready: true, version, handlers: [] });
  }

  /** The switch's canary stage: for the Kata image it leaves active; a failure throws, and is undone. */
  private async canaryStage(primary: StoredImage | null, observed: Observed): Promise<void> {
    const result = await this.runCanary(primary ?? (await this.activeImage(observed)));
    if (result.outcome === "failed") {
      throw new KataError("canary-failed", `canary (${result.handler}) failed at ${result.step}: ${result.reason}`, {
        remedy: `the previous image stays active and ${result.image ?? "the new image"} is held; \`kata-sysextctl canary\` runs it again`,
      });
    }
  }

  /** The canary for the Kata image active now (`kata-sysextctl canary`, and the daemon proving what it found). */
  async canaryActive(onProgress?: (phase: CanaryPhase) => void): Promise<CanaryResult> {
    const observed = await this.observe();
    const active = await this.activeImage(observed);
    return this.runCanary(active, onProgress);
  }

  /** Removes what canaries of a killed daemon left in containerd; a no-op without a canary. */
  async sweepCanaries(): Promise<void> {
    await this.deps.canary?.sweep();
  }

  /** Tells the cluster this node is not ready for Kata (the daemon stops cleanly). */
  async withdrawReadiness(why: string): Promise<void> {
    await this.deps.cluster?.withdraw(why);
  }

  /**
   * Runs the canary for `image` (the active Kata image, or the one a switch moves to), reports the result, and
   * tells the cluster: ready with the handler once it passed, not ready when it failed.
   */
  async runCanary(image: StoredImage | null, onProgress?: (phase: CanaryPhase) => void): Promise<CanaryResult> {
    const probe = this.deps.canary;
    if (probe === undefined) throw new KataError("canary-failed", "the canary is off ([health] canary = false)");
    const result = await probe.run(image, onProgress);
    this.emit({ kind: "canary", result });
    const log = this.deps.log.with({ KATA_SYSEXT_NAME: this.name, KATA_CANARY_HANDLER: result.handler });
    if (result.outcome === "passed") {
      log.info(
        `canary passed with ${result.handler} in ${result.durationMs} ms for ${image?.file ?? "no image"}: ${result.output}`,
      );
      await this.deps.cluster?.publish({
        ready: image !== null,
        version: image?.version ?? null,
        handlers: [result.handler],
      });
    } else {
      log.warning(`canary failed with ${result.handler} at ${result.step}: ${result.reason}`, {
        MESSAGE_ID: MessageId.canaryFailed,
      });
      await this.deps.cluster?.withdraw(`the canary failed at ${result.step}`);
    }
    return result;
  }

  private get decideContext(): DecideContext {
    const { config, arch, store, members, log } = this.deps;
    return { config, arch, store, members, log, now: this.deps.clock.now() };
  }

  /** Reads every member's manifest and picks the set (decide.ts); keeps the metadata for offline decisions. */
  private async resolveRemote(host: HostRelease, observed: Observed) {
    const decided = await decideRemote(this.decideContext, host, observed);
    this.offlineMetadata = decided.metadata;
    return decided;
  }

  private qualifies(member: Member, host: HostRelease, images: JudgedImage[]) {
    return qualifies(this.decideContext, member, host, images, this.offlineMetadata);
  }

  private resolveOffline(observed: Observed): Targets {
    return decideOffline(this.decideContext, observed, this.offlineMetadata);
  }

  /** Download, verify, inspect, then admit into the store, or quarantine (admit.ts). */
  private async download(member: Member, target: Target, host: HostRelease): Promise<void> {
    if (target.remote === null) return;
    await fetchAndAdmit(
      { store: this.deps.store, arch: this.deps.arch, clock: this.deps.clock, log: this.deps.log },
      { name: member.name, source: member.source },
      { version: target.version, file: target.file, sha256: target.remote.sha256 },
      host,
      (event) => this.emit(event),
    );
  }

  /**
   * Activation deferred for running sandboxes: since when passes have been deferring, whether the cluster should
   * reboot this node (controller/reboot.ts), and then what the boot step activates (before containerd, so before
   * any sandbox) instead of the old image.
   */
  private async deferActivation(observed: Observed, targets: Targets) {
    const { config, clock } = this.deps;
    const now = clock.now();
    const waitingSince = observed.state.waitingSince ?? now.toISOString();
    const { deferred, heldBack } = deferredTargets(
      observed.members.map((view) => ({
        name: view.name,
        primary: this.member(view.name).primary,
        active: activeFile(view.link),
        stored: view.images.map((i) => i.file),
      })),
      targets,
    );
    const next = observed.state.nextBoot;
    const verdict = decideReboot({
      heldBack,
      activation: config.policy.activation,
      waitingSinceMs: Date.parse(waitingSince),
      maxWaitSeconds: config.policy.maxWaitSeconds,
      nowMs: now.getTime(),
      // Pending until booted: runBoot forgets it once the machine runs that release.
      osUpdate: next !== null && next.flatcarVersion !== observed.host.versionId ? next : null,
    });
    await this.updateState(() => (verdict.request ? { deferred, waitingSince } : { waitingSince }));
    const reboot = await this.settleReboot(
      verdict.request ? verdict.reason : null,
      "the policy no longer asks for one (policy.activation, policy.max_wait_seconds)",
    );
    // "wait": the next pass should come as soon as the last sandbox ends, not at the next timer tick.
    const waitFor = config.policy.activation === "wait" ? ("sandboxes" as const) : null;
    return { reboot, requeueAfterMs: verdict.request ? null : verdict.recheckAfterMs, waitFor };
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
      await this.updateState(() => ({ reboot: request }));
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

  /** Records how the pass ended; read-modify-write, because a switch in this pass updated `previous`. */
  private async remember(
    last: { result: "ok" | "failed"; error: KataError | null },
    { waitEnded = false }: { waitEnded?: boolean } = {},
  ): Promise<void> {
    await this.updateState((state) => ({
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
 * A request turned down before anything on the host changed (a rollback with nothing to go back to): the caller
 * gets the error, and state.json keeps the outcome of the last real pass.
 */
class Refusal extends Error {
  readonly error: KataError;
  constructor(error: KataError) {
    super(error.message);
    this.name = "Refusal";
    this.error = error;
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
