// Carries out the steps plan.ts chooses: download (admit.ts), switch and re-merge (activation.ts's stages with
// their undo), unlink, prune; and puts back a switch the daemon died inside. Each step changes the host; what it
// remembers goes through records.ts.
import { KATA_ETC_CONFIG } from "../containerd/handlers.ts";
import { asKataError, KataError } from "../errors.ts";
import { MessageId } from "../log/logger.ts";
import type { Member, Target } from "../model.ts";
import type { HostRelease } from "../release/os-release.ts";
import type { PreflightSummary } from "../status.ts";
import { activeFile } from "../store/link.ts";
import type { LinkChangeRecord } from "../store/state.ts";
import type { StoredImage } from "../store/store.ts";
import { type ActivationDeps, type LinkChange, sharedFiles, switchImages } from "./activation.ts";
import { fetchAndAdmit } from "./admit.ts";
import { memberNamed } from "./decide.ts";
import { holdsAfterFailedSwitch, type LinkMove, switchRecord } from "./decisions.ts";
import type { ReconcilerDeps } from "./deps.ts";
import type { Health } from "./health.ts";
import type { Observed } from "./observe.ts";
import type { JointAction } from "./plan.ts";
import type { Records } from "./records.ts";

/** A step of plan.ts's that changes something now (a deferral is the pass's to handle). */
export type Step = Exclude<JointAction, { kind: "defer" }>;

export class Actuator {
  /** The preflight as it was right before the last switch (or after it), for the health stage's comparison. */
  private lastPreflight: PreflightSummary | null = null;

  private readonly deps: ReconcilerDeps;
  private readonly records: Records;
  private readonly health: Health;
  private readonly observe: () => Promise<Observed>;

  constructor(deps: ReconcilerDeps, records: Records, health: Health, observe: () => Promise<Observed>) {
    this.deps = deps;
    this.records = records;
    this.health = health;
    this.observe = observe;
  }

  private emit: NonNullable<ReconcilerDeps["onProgress"]> = (event) => this.deps.onProgress?.(event);

  private member(name: string): Member {
    return memberNamed(this.deps, name);
  }

  /** Carries out one step; returns the --root limitation note when a switch could not confirm its merge. */
  async carryOut(action: Step, observed: Observed): Promise<string | null> {
    switch (action.kind) {
      case "download":
        await this.download(this.member(action.member), action.target, observed.host);
        return null;
      case "switch": {
        this.emit({ kind: "state", state: "activating" });
        await this.health.withdrawReadiness("a switch starts");
        // Recorded before the first link moves: if the daemon dies inside the switch, the next pass finds it.
        await this.records.update(() => ({ switching: action.changes }));
        let result: Awaited<ReturnType<Actuator["switch"]>>;
        try {
          result = await this.switch(action.changes, observed);
        } catch (err) {
          // Undone by its own stages: nothing is left half-way.
          await this.records.update(() => ({ switching: null }));
          throw err;
        }
        await this.records.update((state) => ({ ...switchRecord(state, action.changes), switching: null }));
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
        await this.health.withdrawReadiness("a re-merge starts");
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

  /** Download, verify, inspect, then admit into the store, or quarantine (admit.ts). */
  async download(member: Member, target: Target, host: HostRelease): Promise<void> {
    if (target.remote === null) return;
    await fetchAndAdmit(
      { store: this.deps.store, arch: this.deps.arch, clock: this.deps.clock, log: this.deps.log },
      { name: member.name, source: member.source },
      { version: target.version, file: target.file, sha256: target.remote.sha256 },
      host,
      this.emit,
    );
  }

  /**
   * The daemon died inside a switch (kill -9, power loss): some links may name the new images without their
   * merge, containerd or health stages having run, and `previous` was not recorded yet. Put those links back and
   * merge the old set again; the pass then switches anew with every stage and its undo, and records `previous`.
   */
  async undoInterruptedSwitch(changes: LinkChangeRecord[]): Promise<Observed> {
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
    await this.records.update(() => ({ switching: null }));
    return observed;
  }

  /** containerd's Kata runtimes follow the primary image that is active now (stage.ts, ensure). */
  async ensureRegistration(observed: Observed): Promise<void> {
    const runtime = this.deps.runtime;
    if (runtime === undefined) return;
    const active = await this.health.activeImage(observed);
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
    const clashes = sharedFiles(await this.imagesAfter(linkChanges, observed));
    if (clashes.length > 0) {
      // Refused before anything moved: no rollback to report. Held, so the next pass takes a set that does not
      // clash (an older one) instead of failing on this one forever.
      await this.records.hold(holdsAfterFailedSwitch(changes), "the refused set");
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
      canary: this.deps.canary === undefined ? undefined : (primary) => this.health.canaryStage(primary, observed),
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
      await this.records.hold(holdsAfterFailedSwitch(changes), "the rollback after a failed activation");
      this.emit({ kind: "rolled-back" });
      throw error;
    }
  }

  /** Every member's image once the switch is done, for the check that no two ship the same file. */
  private async imagesAfter(changes: LinkChange[], observed: Observed): Promise<StoredImage[]> {
    const after: StoredImage[] = [];
    for (const view of observed.members) {
      const changed = changes.find((c) => c.name === view.name);
      const file = changed?.to.file ?? activeFile(view.link);
      const image = file === null ? null : await this.deps.store.get(file);
      if (image !== null) after.push(image);
    }
    return after;
  }
}
