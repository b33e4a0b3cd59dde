// The reconcile loop: observe the host, decide what each member wants (decide.ts), plan the next step (plan.ts,
// pure), carry it out (act.ts), observe again. `run` is the one entry: a request names the kind of pass, and its
// outcome says how it ended and when to run again. The daemon (src/daemon/) owns the queue and the timers.
import type { VersionsResult } from "../api/schemas.ts";
import type { CanaryPhase, CanaryResult } from "../canary/canary.ts";
import { asKataError, type KataError } from "../errors.ts";
import { cleanupPartials } from "../fetch/download.ts";
import { MessageId } from "../log/logger.ts";
import type { Member, ReconcileEvent, Target, Targets } from "../model.ts";
import type { HostRelease } from "../release/os-release.ts";
import type { WaitingStatus } from "../status.ts";
import { activeFile } from "../store/link.ts";
import { acquireLock, type Lock } from "../store/lock.ts";
import type { RebootRequest } from "../store/state.ts";
import { Actuator, type Step } from "./act.ts";
import { listVersions } from "./catalog.ts";
import { type CandidateRecords, memberNamed, PassDecisions, Unresolvable } from "./decide.ts";
import { holdsAfterRollback, previousOf, rollbackTargets, stagedOf } from "./decisions.ts";
import { deferActivation } from "./deferral.ts";
import type { ReconcilerDeps } from "./deps.ts";
import { Health } from "./health.ts";
import { type MemberView, type Observed, observe } from "./observe.ts";
import { nextAction, nextJointAction, pruneCandidates } from "./plan.ts";
import { Records } from "./records.ts";
import { fetchForRelease, type Staged } from "./staging.ts";
import { takeOver } from "./takeover.ts";
import { passVerdict, skippedNewer } from "./verdict.ts";

export type { ReconcilerDeps } from "./deps.ts";

/** What a pass is asked to do. */
export type PassRequest =
  /** With the network: resolve against the sources, fetch and verify what is missing, activate, prune. */
  | { kind: "reconcile" }
  /** Without the network: link a stored image that matches the booted OS, or unlink an incompatible one. */
  | { kind: "offline" }
  /** The boot step: an offline pass, then what a reboot settles (the reboot asked for, the next boot staged). */
  | { kind: "boot" }
  /** Undo the last switch, member by member, with the same safety as an upgrade. */
  | { kind: "rollback" };

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
  /** What a deferred pass left waiting for the sandboxes to end (/status `waiting`). */
  waiting?: WaitingStatus | null;
}

/**
 * What the daemon drives: passes through `run`, and between them the queries and records it answers the API
 * with. The daemon owns the queue and the timers; it decides nothing the controller decides.
 */
export type Controller = Pick<
  Reconciler,
  "run" | "observe" | "sandboxesRunning" | "versions" | "canaryActive" | "fetchForRelease" | "health" | "records"
>;

/** What a pass wants active, per member, with what the choice left out (passes with the network). */
interface Decision {
  targets: Targets;
  candidates?: CandidateRecords;
}

const wanted = (targets: Targets): string[] => [...targets.values()].flatMap((t) => (t === null ? [] : [t.file]));

/** Bounds one pass: download, switch, prune and a spare; a plan that wants more is a bug, not a reason to spin. */
const MAX_STEPS = 6;

export class Reconciler {
  private readonly deps: ReconcilerDeps;
  /** Canary and the cluster's readiness. */
  readonly health: Health;
  /** What the controller keeps in state.json. */
  readonly records: Records;
  private readonly actuator: Actuator;

  constructor(deps: ReconcilerDeps) {
    this.deps = deps;
    this.health = new Health(deps);
    this.records = new Records(deps);
    this.actuator = new Actuator(deps, this.records, this.health, () => this.observe());
  }

  /** Runs one pass of the kind asked for; never throws for what went wrong on the host (the outcome says it). */
  async run(request: PassRequest): Promise<PassOutcome> {
    switch (request.kind) {
      case "reconcile":
        return this.pass(async (observed, decisions) => {
          this.emit({ kind: "state", state: "resolving" });
          return decisions.remote(observed.host, observed);
        });
      case "offline":
        return this.offline();
      case "boot":
        return this.afterReboot(await this.offline());
      case "rollback":
        return this.rollback();
    }
  }

  private get primary(): Member {
    const primary = this.deps.members[0];
    if (primary === undefined) throw new Error("reconciler without members");
    return primary;
  }

  private emit(event: ReconcileEvent): void {
    this.deps.onProgress?.(event);
  }

  private member(name: string): Member {
    return memberNamed(this.deps, name);
  }

  async observe(): Promise<Observed> {
    const { paths, arch, store, members, sysext, state, sandboxes } = this.deps;
    return observe({ paths, arch, store, members, sysext, state, sandboxes });
  }

  /** Running Kata sandboxes, without observing the rest (the daemon looks every few seconds while it waits). */
  sandboxesRunning(): Promise<number> {
    return this.deps.sandboxes();
  }

  /** Stored and published Kata versions, judged as a pass would (catalog.ts). */
  async versions(): Promise<VersionsResult> {
    return listVersions(this.deps, await this.observe());
  }

  /** The canary for the Kata image active now (`kata-sysextctl canary`, and the daemon proving what it found). */
  async canaryActive(onProgress?: (phase: CanaryPhase) => void): Promise<CanaryResult> {
    return this.health.runCanary(await this.health.activeImage(await this.observe()), onProgress);
  }

  /** The images a not-yet-booted Flatcar release needs, fetched and verified, not activated (staging.ts). */
  fetchForRelease(nextOs: HostRelease, record?: (staged: Staged) => Promise<void>): Promise<Staged> {
    return fetchForRelease(
      this.deps,
      {
        actuator: this.actuator,
        records: this.records,
        observe: () => this.observe(),
        decisions: () => this.decisions(),
        maxRounds: MAX_STEPS + 2 * this.deps.members.length,
      },
      nextOs,
      record,
    );
  }

  private decisions(): Promise<PassDecisions> {
    const { config, arch, store, members, log, clock } = this.deps;
    return PassDecisions.begin(() => ({ config, arch, store, members, log, now: clock.now() }));
  }

  private offline(): Promise<PassOutcome> {
    return this.pass(async (observed, decisions) => ({ targets: decisions.offline(observed) }), {
      requireActive: false,
      decidesDownloads: false,
    });
  }

  /**
   * The boot step after its pass. The reboot kata-sysextd asked for has happened: a pass that reached its goal
   * withdrew the request already; one that failed withdraws it too, or a sentinel on a persistent path would
   * have the node rebooted again and again (one that deferred, sandboxes already running, asked anew). Booted
   * into the release an image was staged for: the next boot is now this boot.
   */
  private async afterReboot(outcome: PassOutcome): Promise<PassOutcome> {
    // No sandbox from before the reboot runs any more: a wait for them is over (one this pass deferred for
    // sandboxes started since, when the step runs late, stands).
    if (outcome.result !== "deferred") await this.records.update(() => ({ waitingSince: null }));
    if (outcome.result === "failed") {
      const reboot = await this.records.settleReboot(null, "the reboot it asked for has happened");
      return { ...outcome, reboot };
    }
    const observed = outcome.observed;
    if (outcome.result === "ok" && observed?.state.nextBoot?.flatcarVersion === observed?.host.versionId) {
      await this.records.forgetNextBoot();
    }
    return outcome;
  }

  /**
   * Undoes the last switch: every member it moved goes back to its image from before it, together and with the
   * same safety as an upgrade; members it did not move stay. The images rolled back from are held (skipped by
   * later passes), and the ones rolled back to are no longer held: the operator chose them.
   */
  private rollback(): Promise<PassOutcome> {
    const before = new Map<string, string>(); // member -> the file active when the rollback started
    return this.pass(
      async (observed, decisions) => {
        const members = observed.members.map((view) => {
          const member = this.member(view.name);
          const active = activeFile(view.link);
          if (active !== null) before.set(view.name, active);
          const previous = previousOf(observed.state, view.name);
          const image = view.images.find((i) => i.file === previous);
          // The same verdict the boot path uses: merging is not enough, the policy must allow it on this host too.
          const verdict = image === undefined ? null : decisions.qualifies(member, observed.host, [image]);
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
          // A rollback is a switch too: a second one undoes the first and brings back what that one held.
          const unheld = Object.entries(release).flatMap(([m, files]) =>
            files.filter((f) => observed.state.held[m]?.includes(f)),
          );
          if (unheld.length > 0) {
            this.deps.log.warning(
              `${unheld.join(", ")} had been held by an earlier rollback, which this one undid; its hold is lifted (to go further back, pin [policy] versions)`,
            );
          }
          await this.records.hold(hold, "rollback", release);
        },
      },
    );
  }

  private async pass(
    decide: (observed: Observed, decisions: PassDecisions) => Promise<Decision>,
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
    const log = this.deps.log.with({ KATA_SYSEXT_NAME: this.primary.name });
    let observed: Observed | null = null;
    let unconfirmed: string | null = null;
    let lock: Lock | null = null;
    let wantedFiles: string[] = [];
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
      if (observed.state.switching !== null) {
        observed = await this.actuator.undoInterruptedSwitch(observed.state.switching);
      }
      observed = await this.records.liftHoldsOfAnotherConfig(observed);
      // A host set up the sysext-bakery way: its link is taken over before anything is decided (takeover.ts).
      if (options.decidesDownloads !== false) observed = await this.takeOverBakeryLinks(observed);
      const decisions = await this.decisions();
      let decision = await decide(observed, decisions);
      await this.records.candidates(decision.candidates);
      wantedFiles = wanted(decision.targets);
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
          const { error, ...deferral } = await deferActivation(
            this.deps,
            this.records,
            current,
            decision.targets,
            action.reason,
          );
          // Recorded like any other end of a pass, so state.json (and `--once`) says what waits, not the last "ok".
          await this.records.passEnded({ result: "deferred", error });
          return { result: "deferred", error, observed, unconfirmed, ...deferral };
        }
        const done = await this.carryOutOrBlame(action, current);
        if (done.failed) {
          // The candidate failed verification or inspection: remembered, and the same pass falls back to the
          // next newest in policy (each such download is a step, so the loop's bound holds).
          observed = await this.observe();
          decision = await decide(observed, decisions);
          await this.records.candidates(decision.candidates);
          wantedFiles = wanted(decision.targets);
          continue;
        }
        unconfirmed = done.unconfirmed ?? unconfirmed;
        observed = await this.observe();
        const downloaded = action.kind === "download" ? action.target.file : null;
        const admitted = observed.members.some((m) => m.images.some((i) => i.file === downloaded && i.compatible));
        if (downloaded !== null && !admitted) {
          // Stored, but made for another release of this OS (admit.ts): decide again, which passes it over (each
          // such download is a step, so the loop's bound holds). An image that did not make it into the store
          // ends the pass (it was quarantined).
          const stored = observed.members.some((m) => m.images.some((i) => i.file === downloaded));
          if (!stored) break;
          decision = await decide(observed, decisions);
          // Remembered (by digest) before anything is pruned, so no later pass fetches it again to learn that.
          await this.records.candidates(decision.candidates);
          wantedFiles = wanted(decision.targets);
          // Each such image may be hundreds of MiB: the store stays within [policy] keep while the pass goes on.
          observed = await this.pruneStore(observed, decision.targets);
        }
      }
      const verdict = await this.verdict(observed, decision.targets, requireActive);
      if (verdict !== null) throw verdict;
      this.reportSkipped(observed, decision.candidates);
      await this.actuator.ensureRegistration(observed);
      await this.health.tellClusterWithoutCanary(observed);
      if (unconfirmed === null && this.deps.sysext.limitation !== null && observed.members.some((m) => !m.merged)) {
        unconfirmed = this.deps.sysext.limitation;
      }
      if (options.onSuccess !== undefined) {
        await options.onSuccess(observed);
        // What it recorded (a rollback's holds) belongs in the outcome, and so in /status.
        observed = await this.observe();
      }
      // What this pass wanted is active: no activation waits for a reboot any more.
      const reboot = await this.records.settleReboot(null, "what it was for is active or no longer wanted");
      await this.records.passEnded({ result: "ok", error: null }, { waitEnded: options.decidesDownloads !== false });
      return { result: "ok", error: null, observed, unconfirmed, reboot, requeueAfterMs: null };
    } catch (err) {
      const refused = err instanceof Refusal;
      const error = refused ? err.error : asKataError(err);
      if (err instanceof Unresolvable && lock !== null) {
        await this.records.candidates(err.candidates).catch(() => undefined);
        // Nothing to activate, but what this pass and earlier ones fetched stays within [policy] keep.
        if (observed !== null) {
          const seen = observed;
          await this.pruneStore(seen, new Map()).catch((e) => log.warning(`pruning: ${asKataError(e).message}`));
        }
      }
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
      if (!refused && lock !== null) await this.records.passEnded({ result: "failed", error }).catch(() => undefined);
      return { result: "failed", error, observed, unconfirmed };
    } finally {
      // Partial downloads of what this pass still wants stay for resuming; any other is stale.
      if (lock !== null && options.decidesDownloads !== false) {
        await cleanupPartials(this.deps.store.incomingDir, wantedFiles).catch(() => undefined);
      }
      await lock?.release();
      this.emit({ kind: "download", progress: null });
    }
  }

  private async takeOverBakeryLinks(observed: Observed): Promise<Observed> {
    let moved = false;
    for (const view of observed.members) {
      const member = this.member(view.name);
      moved = (await takeOver(this.deps, member, view.link, observed.host, (e) => this.emit(e))) || moved;
    }
    return moved ? this.observe() : observed;
  }

  /**
   * Carries out one step. A download whose image fails verification or inspection is not the end of the pass:
   * the failure is remembered against the candidate (Records.blame), so the pass can fall back.
   */
  private async carryOutOrBlame(
    action: Step,
    observed: Observed,
  ): Promise<{ failed: false; unconfirmed: string | null } | { failed: true }> {
    try {
      return { failed: false, unconfirmed: await this.actuator.carryOut(action, observed) };
    } catch (err) {
      if (action.kind !== "download") throw err;
      await this.records.blame(action.member, action.target, err, "this pass");
      return { failed: true };
    }
  }

  /** A pass that ends on an image older than a skipped release says so, so nobody mistakes it for the newest. */
  private reportSkipped(observed: Observed, records: CandidateRecords | undefined): void {
    for (const view of observed.members) {
      const active = view.images.find((i) => i.file === activeFile(view.link));
      const newer = skippedNewer(active?.version ?? null, records?.get(view.name)?.skipped ?? []);
      if (newer.length === 0) continue;
      this.deps.log.warning(
        `${view.name} ${active?.version ?? "none"} is active; newer releases were skipped: ${newer.map((s) => `${s.version} (${s.reason})`).join("; ")}`,
        { KATA_SYSEXT_NAME: view.name },
      );
    }
  }

  /** Null when the pass reached its goal; else the error that says what is missing (verdict.ts). */
  private async verdict(observed: Observed, targets: Targets, requireActive: boolean): Promise<KataError | null> {
    const members = await Promise.all(
      observed.members.map(async (view) => {
        const member = this.member(view.name);
        const target = targets.get(view.name) ?? null;
        const remote = target?.remote ?? null;
        const missing = target !== null && remote !== null && activeFile(view.link) !== target.file;
        return {
          name: view.name,
          primary: member.primary,
          linkPath: member.link.path,
          link: view.link,
          target,
          targetQuarantined: missing && (await this.deps.store.isQuarantined(target.file, remote.sha256)),
        };
      }),
    );
    return passVerdict(members, requireActive);
  }

  /**
   * Prunes what the plan would prune (plan.ts pruneCandidates) outside the plan's own steps: after an image that
   * turned out to be for another release, and when no set could be chosen. `targets`' files are spared.
   */
  private async pruneStore(observed: Observed, targets: Targets): Promise<Observed> {
    let pruned = false;
    for (const view of observed.members) {
      const input = this.planInput(observed, view, targets.get(view.name) ?? null);
      const files = pruneCandidates(input, activeFile(view.link));
      if (files.length === 0) continue;
      await this.actuator.carryOut({ kind: "prune", member: view.name, files }, observed);
      pruned = true;
    }
    return pruned ? this.observe() : observed;
  }

  private planInput(observed: Observed, view: MemberView, target: Target | null) {
    return {
      link: view.link,
      store: view.images.map((i) => ({ file: i.file, version: i.version, compatible: i.compatible })),
      merged: view.merged,
      mergeObservable: this.deps.sysext.limitation === null,
      target,
      sandboxesRunning: observed.sandboxesRunning,
      activation: this.deps.config.policy.activation,
      keep: this.deps.config.policy.keep,
      previous: previousOf(observed.state, view.name),
      staged: stagedOf(observed.state.nextBoot, view.name),
      deferred: observed.state.deferred[view.name] ?? null,
    };
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
