// The long-running controller: one in-memory status document, passes serialised one at a time, a timer,
// and the actions the API's unix socket offers. Wiring to the outside (API, D-Bus, watchers) is in run.ts.
import type { Metrics } from "../api/metrics.ts";
import type { RefreshOptions } from "../api/routes.ts";
import type { ActionResult, ApiActions, VersionsResult } from "../api/server.ts";
import type { CanaryPhase } from "../canary/canary.ts";
import { canaryHandler } from "../canary/probe.ts";
import type { Cancel, Clock, Timers } from "../clock.ts";
import type { Config } from "../config/schema.ts";
import type { RuntimeRegistration } from "../containerd/stage.ts";
import type { Observed } from "../controller/observe.ts";
import type { Controller, PassOutcome } from "../controller/reconciler.ts";
import { statusAfterPass, withCanary, withNextBoot, withRestingState } from "../controller/snapshot.ts";
import { asKataError, errorPhase, KataError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { MessageId } from "../log/logger.ts";
import type { Member, ReconcileEvent } from "../model.ts";
import type { CanaryStatus, ConfigRejection, PreflightSummary, StatusSnapshot } from "../status.ts";
import { activeFile } from "../store/link.ts";
import type { UpdateStatus } from "../systemd/update-engine.ts";
import { prepareNextBoot } from "./next-boot.ts";

const SANDBOX_POLL_MS = 5_000;
/** A canary that failed outside a switch runs again after this, doubling up to the maximum. */
const CANARY_RETRY_FIRST_MS = 10_000;
const CANARY_RETRY_MAX_MS = 30 * 60_000;

/** What a configuration reload replaces. */
export interface Configured {
  reconciler: Controller;
  /** The containerd registration, whose last decision /status shows; absent when [containerd] enabled = false. */
  runtime?: RuntimeRegistration;
  /** Kata first, then its companions. */
  members: Member[];
  config: Config;
}

export interface DaemonDeps extends Configured {
  arch: string;
  metrics: Metrics;
  clock: Clock & Timers;
  log: Logger;
  initial: StatusSnapshot;
  preflight?: () => Promise<PreflightSummary>;
  /** Told about every status change (sd_notify STATUS=, metrics). */
  onStatus?: (doc: StatusSnapshot) => void;
}

export class Daemon implements ApiActions {
  private deps: DaemonDeps;
  /** The Flatcar version update_engine has installed and waits to reboot into, or null. */
  private pendingUpdate: string | null = null;
  /** The preflight verdict last logged, so a failing check is reported when it starts failing, not every pass. */
  private reportedPreflight: PreflightSummary | null = null;
  /** Whether the pass now running has produced a preflight verdict (its health stage). */
  private preflightThisPass = false;
  private doc: StatusSnapshot;
  private queue: Promise<unknown> = Promise.resolve();
  private timer: Cancel | null = null;
  /** A timer tick's pass is queued and has not started yet. */
  private timerPassQueued = false;
  /** While a pass waits for Kata sandboxes to end (policy.activation = "wait"): the look for them. */
  private sandboxWatch: Cancel | null = null;
  /** The pass that runs when the wait for sandboxes runs out (policy.max_wait_seconds), if one is due. */
  private recheck: Cancel | null = null;
  /** The next try of a canary that failed outside a switch (proveActive), and the wait after that one. */
  private canaryRetry: Cancel | null = null;
  private canaryRetryMs = CANARY_RETRY_FIRST_MS;

  constructor(deps: DaemonDeps) {
    this.deps = deps;
    this.doc = deps.initial;
  }

  /** What /status serves: the current document, never computed on request. */
  readonly snapshot = (): StatusSnapshot => this.doc;

  private update(doc: StatusSnapshot): void {
    this.doc = doc;
    this.deps.metrics.setStatus(doc);
    this.deps.onStatus?.(doc);
  }

  /** Events from a running pass: state changes and download progress. */
  readonly onEvent = (event: ReconcileEvent): void => {
    if (event.kind === "state") this.update({ ...this.doc, state: event.state });
    else if (event.kind === "download") {
      if (event.progress !== null && this.doc.download !== null) {
        this.deps.metrics.downloadBytes(Math.max(0, event.progress.bytes - this.doc.download.bytes));
      }
      this.update({ ...this.doc, download: event.progress });
    } else if (event.kind === "rolled-back") this.deps.metrics.rolledBack();
    else if (event.kind === "canary") {
      const { output: _output, ...result } = event.result;
      this.deps.metrics.canaryRan(result);
      this.update(withCanary(this.doc, result));
    } else this.takePreflight(event.summary);
  };

  /** Runs `fn` after every earlier pass or action has finished: one change to the host at a time. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = () => {
      this.preflightThisPass = false;
      return fn();
    };
    const next = this.queue.then(run, run);
    // The queue goes on after a failure, which is logged here: callers that await get the error too, but for work
    // nobody awaits (timer ticks, update_engine signals, file events) this line is all there is.
    this.queue = next.catch((err: unknown) => {
      const error = asKataError(err);
      this.deps.log.error(`queued work failed: ${error.message}`, { ERROR_CODE: error.code });
    });
    return next;
  }

  /** For work nobody awaits: the error is logged by serial(), not thrown at the process as unhandled. */
  private background(work: Promise<unknown>): void {
    work.catch(() => undefined);
  }

  private async finishPass(outcome: PassOutcome, startedMs: number): Promise<ActionResult> {
    // A pass that activated something ran the preflight as its health stage already; once is enough.
    const preflight =
      this.preflightThisPass || this.deps.preflight === undefined ? this.doc.preflight : await this.runPreflight();
    const at = this.deps.clock.now().toISOString();
    this.update(
      statusAfterPass({ base: this.doc, outcome, at, preflight, containerd: this.deps.runtime?.status() ?? null }),
    );
    this.deps.metrics.reconciled(outcome.result, (this.deps.clock.monotonicMs() - startedMs) / 1000);
    // A failed pass says nothing about the wait: a re-check already due stays.
    if (outcome.requeueAfterMs !== undefined) this.recheckAfter(outcome.requeueAfterMs);
    const code = outcome.error?.code ?? null;
    const phase = code === null ? null : errorPhase(code);
    if (code !== null && phase === "verification") this.deps.metrics.verificationFailed(code);
    else if (code !== null && phase === "download") this.deps.metrics.downloadFailed(code);
    const kata = this.doc.members[0];
    const active = kata.active;
    const failed = outcome.result === "failed";
    const shown = `${kata.name} ${active ?? "(none)"} active${kata.merged ? " and merged" : ""}`;
    return {
      ok: !failed,
      result: outcome.result,
      // A deferred pass says what waits (its error is no failure: code and remedy stay for failures).
      message: failed
        ? (outcome.error?.message ?? "failed")
        : `${shown}${outcome.result === "deferred" && outcome.error ? `; ${outcome.error.message}` : ""}`,
      code: failed ? (outcome.error?.code ?? null) : null,
      remedy: failed ? (outcome.error?.remedy ?? null) : null,
      active,
    };
  }

  /** Removes canaries a killed daemon left in containerd; said in the journal, never fatal (containerd may be down). */
  sweepCanaries(): Promise<void> {
    return this.serial(async () => {
      try {
        await this.deps.reconciler.health.sweepCanaries();
      } catch (err) {
        this.deps.log.info(`canaries left behind not swept yet: ${asKataError(err).message}`);
      }
    });
  }

  /** `kata-sysextctl canary`: the canary with the active image, now, one at a time with passes. */
  canary(onPhase: (phase: CanaryPhase) => void): Promise<CanaryStatus> {
    return this.serial(async () => {
      const { output: _output, ...result } = await this.deps.reconciler.canaryActive(onPhase);
      return result;
    });
  }

  /**
   * After a pass: the active image is proven by a canary that passed with it, else one runs now. So the image the
   * boot step linked (containerd is up by the time the daemon runs), the one a failed switch went back to, and one
   * whose canary failed earlier are proven (or found wanting) without waiting for the next switch.
   */
  private async proveActive(): Promise<void> {
    const handler = this.doc.canary.handler;
    const image = this.doc.members[0].image;
    if (handler === null || image === null || !this.deps.config.health.canary) return;
    const file = image.split("/").pop();
    const last = this.doc.canary.results.find((r) => r.handler === handler);
    if (last !== undefined && last.image === file && last.outcome === "passed") return;
    let passed = false;
    try {
      passed = (await this.deps.reconciler.canaryActive()).outcome === "passed";
    } catch (err) {
      this.deps.log.warning(`the canary could not run: ${asKataError(err).message}`);
    }
    if (passed) this.canaryRetryMs = CANARY_RETRY_FIRST_MS;
    else this.proveAgainLater();
  }

  /**
   * A canary that failed outside a switch is tried again, backing off, rather than at the next pass hours later:
   * containerd may simply not have been up yet when the daemon started (kubelet starts it on some hosts).
   */
  private proveAgainLater(): void {
    if (this.canaryRetry !== null) return;
    const delayMs = this.canaryRetryMs;
    this.canaryRetryMs = Math.min(delayMs * 2, CANARY_RETRY_MAX_MS);
    this.deps.log.info(`the canary runs again in ${Math.round(delayMs / 1000)} s`);
    this.canaryRetry = this.deps.clock.after(delayMs, () => {
      this.canaryRetry = null;
      this.background(this.serial(() => this.proveActive()));
    });
  }

  refresh(options: RefreshOptions = {}): Promise<ActionResult> {
    const result = this.serial(async () => {
      const started = this.deps.clock.monotonicMs();
      if (options.releaseHolds === true) {
        await this.deps.reconciler.records.releaseHolds();
        this.deps.log.notice("holds of earlier rollbacks lifted on request");
      }
      const outcome = await this.deps.reconciler.run({ kind: "reconcile" });
      if (outcome.waitFor === "sandboxes") this.awaitSandboxesEnd();
      const result = await this.finishPass(outcome, started);
      await this.proveActive();
      return result;
    });
    // A pending OS update whose image could not be staged yet (network, no release) is retried with every pass,
    // also after a failed one.
    this.background(result.finally(() => this.background(this.prepareNextBoot())));
    return result;
  }

  /**
   * Swaps in a new configuration between passes and returns whether it differed; the API's listen address needs
   * a restart to change. The pass that follows lifts the holds of earlier rollbacks, made under the old
   * configuration (Reconciler, heldUnder): the operator has decided anew.
   */
  reconfigure(next: Configured, why: "file" | "signal"): Promise<boolean> {
    return this.serial(async () => {
      // An editor's save and a `systemctl reload` both arrive here; the same content is no news, but an explicit
      // reload is still acknowledged.
      if (JSON.stringify(next.config) === JSON.stringify(this.deps.config)) {
        if (why === "signal") this.deps.log.notice("configuration reloaded (unchanged)");
        return false;
      }
      // What is fixed at start is said, never silently kept; the timer simply starts over with the new interval.
      const before = this.deps.config;
      const fixedAtStart: [string, unknown, unknown][] = [
        ["api.listen", before.api.listen, next.config.api.listen],
        ["api.enabled", before.api.enabled, next.config.api.enabled],
        ["daemon.log_level", before.daemon.logLevel, next.config.daemon.logLevel],
      ];
      for (const [key, was, now] of fixedAtStart) {
        if (was !== now) this.deps.log.warning(`${key} changed; restart kata-sysextd to apply it`);
      }
      const intervalChanged = before.daemon.intervalSeconds !== next.config.daemon.intervalSeconds;
      this.deps = { ...this.deps, ...next };
      const handler = next.config.health.canary ? canaryHandler(next.config.health.canaryRuntime) : null;
      if (handler !== this.doc.canary.handler) this.update({ ...this.doc, canary: { ...this.doc.canary, handler } });
      if (intervalChanged && this.timer !== null) {
        this.timer();
        this.startTimer();
      }
      this.deps.log.notice("configuration reloaded");
      return true;
    });
  }

  /**
   * The configuration file as last read on a change or reload: rejected (shown on /status and /metrics, "degraded",
   * until a later read is accepted or the file is back to what runs), or null when it was accepted.
   */
  configRead(rejection: ConfigRejection | null): void {
    if (rejection === null && this.doc.configRejected === null) return;
    this.update(withRestingState({ ...this.doc, configRejected: rejection }));
  }

  /**
   * Something came or went in state.json's folder: a state file moved aside as unusable, or its removal by the
   * operator, is shown now rather than at the next pass. Queued, so no pass that looked earlier overwrites it.
   */
  stateFilesChanged(): Promise<void> {
    return this.serial(async () => {
      const damage = await this.deps.reconciler.records.stateDamage();
      if (JSON.stringify(damage) === JSON.stringify(this.doc.stateDamage)) return;
      if (damage === null)
        this.deps.log.info(`${this.doc.stateDamage?.movedTo} was removed: the state file damage is dealt with`);
      this.update(withRestingState({ ...this.doc, stateDamage: damage }));
    });
  }

  /** update_engine reported a status: stage for an update waiting for its reboot, forget one that went away. */
  onUpdateStatus(status: UpdateStatus): void {
    const needReboot = status.operation === "UPDATE_STATUS_UPDATED_NEED_REBOOT";
    if (needReboot && !knownVersion(status.newVersion)) {
      // update_engine says "0.0.0" (its placeholder) when it restarted after an update it no longer knows the
      // version of: the update is still waiting, and what was staged for it still holds.
      this.deps.log.info(`update_engine reports an update without its version (${status.newVersion || "empty"})`);
      return;
    }
    this.pendingUpdate = needReboot ? status.newVersion : null;
    if (needReboot) this.background(this.prepareNextBoot());
    else if (status.operation === "UPDATE_STATUS_IDLE") {
      // Queued whatever /status shows now: a staging still running behind us would otherwise record its result
      // after this, for an update that went away.
      this.background(
        this.serial(async () => {
          if (this.pendingUpdate !== null || this.doc.nextBoot === null) return;
          await this.deps.reconciler.records.forgetNextBoot();
          this.update(withNextBoot(this.doc, null));
        }),
      );
    }
  }

  private prepareNextBoot(): Promise<void> {
    return this.serial(async () => {
      const version = this.pendingUpdate;
      if (version === null) return;
      const current = this.doc.nextBoot;
      if (current !== null && current.flatcarVersion === version && current.staged) return;
      const observed = await this.deps.reconciler.observe();
      // Staging is no pass: afterwards the state is again what the last pass and preflight made it (a
      // degraded host stays degraded).
      const settled = this.doc.state;
      this.update({ ...this.doc, state: "fetching" });
      let next: Awaited<ReturnType<typeof prepareNextBoot>>;
      try {
        next = await prepareNextBoot({ reconciler: this.deps.reconciler, log: this.deps.log }, observed.host, version);
      } finally {
        // Judged again: a rejected configuration or a removed state file may have come or gone meanwhile.
        this.update(withRestingState({ ...this.doc, state: settled, download: null }));
      }
      this.update(withNextBoot(this.doc, next));
      // A reboot already asked for now serves the OS update too; a pass says so in the sentinel's line.
      if (next.staged && this.doc.reboot.requested) void this.refresh();
    });
  }

  rollback(): Promise<ActionResult> {
    return this.serial(async () => {
      const started = this.deps.clock.monotonicMs();
      const outcome = await this.deps.reconciler.run({ kind: "rollback" });
      if (outcome.result === "ok") this.deps.metrics.rolledBack();
      // A refused rollback changed nothing on the host: say no to the caller, but do not report the host as
      // degraded over it, as a failed pass would.
      if (outcome.result === "failed" && this.unchanged(outcome)) {
        const error = outcome.error;
        return {
          ok: false,
          result: "failed",
          message: error?.message ?? "rollback refused",
          code: error?.code ?? null,
          remedy: error?.remedy ?? null,
          active: this.doc.members[0].active,
        };
      }
      return this.finishPass(outcome, started);
    });
  }

  private unchanged(outcome: PassOutcome): boolean {
    return outcome.observed === null || this.linksAsShown(outcome.observed);
  }

  /** Whether every member's link names the version /status shows as active. */
  private linksAsShown(observed: Observed): boolean {
    return observed.members.every((view) => {
      const linked = activeFile(view.link);
      const version = view.images.find((i) => i.file === linked)?.version ?? null;
      return version === (this.doc.members.find((m) => m.name === view.name)?.active ?? null);
    });
  }

  /**
   * At start, before the first full pass: what is on disk, without the network. It fills /status (host,
   * extension, members, preflight) but is not a reconcile: lastReconcile stays empty and the state says
   * "resolving" until the full pass that follows has concluded, so nobody reads a half-started daemon as done.
   */
  observeOffline(): Promise<void> {
    return this.serial(async () => {
      const outcome = await this.deps.reconciler.run({ kind: "offline" });
      const preflight = this.deps.preflight ? await this.runPreflight() : this.doc.preflight;
      const seen = statusAfterPass({ base: this.doc, outcome, at: this.deps.clock.now().toISOString(), preflight });
      this.update({ ...seen, lastReconcile: this.doc.lastReconcile, state: "resolving" });
    });
  }

  preflight(): Promise<PreflightSummary> {
    return this.serial(async () => {
      const summary = await this.runPreflight();
      if (summary === null) throw new KataError("preflight-failed", "the preflight could not run; see the journal");
      return summary;
    });
  }

  private async runPreflight(): Promise<PreflightSummary | null> {
    if (this.deps.preflight === undefined) return null;
    try {
      const summary = await this.deps.preflight();
      this.takePreflight(summary);
      return summary;
    } catch (err) {
      this.deps.log.error(`preflight could not run: ${asKataError(err).message}`);
      return this.doc.preflight;
    }
  }

  /** A new preflight verdict, from our own run or a pass's health stage: shown, and logged when it changed. */
  private takePreflight(summary: PreflightSummary): void {
    const failing = (s: PreflightSummary | null) =>
      (s?.checks ?? [])
        .filter((c) => c.status === "fail")
        .map((c) => c.id)
        .join(", ");
    // Said once per change of verdict, not on every pass.
    if (!summary.ok && failing(summary) !== failing(this.reportedPreflight)) {
      this.deps.log.warning(`preflight: ${summary.failed} check(s) failed: ${failing(summary)}`, {
        MESSAGE_ID: MessageId.preflightFailed,
      });
    }
    this.reportedPreflight = summary;
    this.preflightThisPass = true;
    this.update({ ...this.doc, preflight: summary });
  }

  versions(): Promise<VersionsResult> {
    return this.deps.reconciler.versions();
  }

  /**
   * Something changed in the extension directories. Our own link switches show up here too, so only a link
   * that no longer names the image this daemon activated counts as someone else's change.
   */
  extensionsChanged(path: string): Promise<void> {
    return this.serial(async () => {
      const observed = await this.deps.reconciler.observe();
      if (this.linksAsShown(observed)) return;
      this.deps.log.notice(`${path} changed outside kata-sysextd; reconciling`);
      void this.refresh();
    });
  }

  startTimer(): void {
    const everyMs = this.deps.config.daemon.intervalSeconds * 1000;
    this.timer = this.deps.clock.every(everyMs, () => {
      // One timer pass waiting is enough: behind a pass slower than the interval, ticks would otherwise pile
      // up without bound, and a stop or a refresh would wait for all of them.
      if (this.timerPassQueued) return;
      this.timerPassQueued = true;
      this.background(this.serial(async () => (this.timerPassQueued = false)).then(() => this.refresh()));
    });
  }

  /**
   * "Wait until none run" means soon after the last one ends, not at the next timer pass hours later: look for
   * the shims every few seconds (a scan of /proc, no network), and run a pass once they are gone.
   */
  private awaitSandboxesEnd(): void {
    if (this.sandboxWatch !== null) return;
    const watch = this.deps.clock.every(SANDBOX_POLL_MS, async () => {
      const running = await this.deps.reconciler.sandboxesRunning();
      const waiting = this.doc.waiting;
      // /status counts the sandboxes waited for as they end, not only at the pass that deferred.
      if (waiting !== null && running > 0 && running !== waiting.sandboxes && this.sandboxWatch === watch) {
        this.update({ ...this.doc, waiting: { ...waiting, sandboxes: running } });
      }
      if (running > 0 || this.sandboxWatch !== watch) return;
      watch();
      this.sandboxWatch = null;
      this.deps.log.info("no Kata sandbox runs any more: activating what was waiting");
      void this.refresh();
    });
    this.sandboxWatch = watch;
  }

  /**
   * A pass when the wait for sandboxes runs out, where it decides to ask for a reboot; the next pass's own answer
   * replaces it. A wait longer than a timer can hold (24.8 days) is decided again when the timer fires.
   */
  private recheckAfter(ms: number | null): void {
    this.recheck?.();
    this.recheck = null;
    if (ms === null) return;
    this.recheck = this.deps.clock.after(ms, () => {
      this.recheck = null;
      void this.refresh();
    });
  }

  /** Waits for the pass in flight, so a stop never interrupts a switch halfway through its stages. */
  async stop(): Promise<void> {
    this.recheck?.();
    this.recheck = null;
    this.canaryRetry?.();
    this.canaryRetry = null;
    this.timer?.();
    this.sandboxWatch?.();
    this.sandboxWatch = null;
    await this.queue;
    // Nobody keeps Kata's readiness true while kata-sysextd is away: a switch could happen without it.
    try {
      await this.deps.reconciler.health.withdrawReadiness("kata-sysextd stopped");
    } catch (err) {
      this.deps.log.warning(`could not withdraw the node's readiness: ${asKataError(err).message}`);
    }
  }

  patch(update: (doc: StatusSnapshot) => StatusSnapshot): void {
    this.update(update(this.doc));
  }
}

/** A Flatcar version update_engine really knows: not empty, not its "0.0.0" placeholder. */
function knownVersion(version: string): boolean {
  return /^\d+(\.\d+)+$/.test(version) && !/^[0.]+$/.test(version);
}
