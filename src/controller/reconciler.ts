// The reconcile loop: observe the host, decide the next step (plan.ts, pure), carry it out, observe again.
// One pass is what `kata-sysextd --once` runs; the daemon runs passes on start, on events and on a timer.
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Clock, Random } from "../clock.ts";
import type { Config } from "../config/schema.ts";
import { KATA_DEFAULTS_DIR } from "../containerd/registration.ts";
import type { RuntimeRegistration } from "../containerd/stage.ts";
import { asKataError, KataError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { MessageId } from "../log/logger.ts";
import type { HostPaths } from "../paths.ts";
import { compatible } from "../release/compat.ts";
import { parseManifest } from "../release/manifest.ts";
import { METADATA_FILE, parseMetadata, type ReleaseMetadata } from "../release/metadata.ts";
import { type HostRelease, parseExtensionRelease } from "../release/os-release.ts";
import { resolve, resolveOffline } from "../release/resolve.ts";
import type { DaemonState, DownloadProgress, PreflightSummary } from "../status.ts";
import type { ActiveLink } from "../store/link.ts";
import { readState, writeState } from "../store/state.ts";
import type { ImageStore, StoredImage } from "../store/store.ts";
import { inspectImage, payloadProblems } from "../sysext/inspect.ts";
import type { Sysext } from "../sysext/sysext.ts";
import { type ActivationDeps, switchImage } from "./activation.ts";
import { type Observed, observe } from "./observe.ts";
import { type Action, nextAction, type Target } from "./plan.ts";
import type { ReleaseSource } from "./source.ts";

export interface ReconcilerDeps {
  paths: HostPaths;
  config: Config;
  arch: string;
  log: Logger;
  clock: Clock;
  random: Random;
  store: ImageStore;
  link: ActiveLink;
  sysext: Sysext;
  source: ReleaseSource;
  preflight?: () => Promise<PreflightSummary>;
  /** containerd registration; absent when [containerd] enabled = false. */
  runtime?: RuntimeRegistration;
  /** Called whenever something /status shows changes. */
  onProgress?: (event: ReconcileEvent) => void;
}

export type ReconcileEvent =
  | { kind: "state"; state: DaemonState }
  | { kind: "download"; progress: DownloadProgress | null }
  | { kind: "preflight"; summary: PreflightSummary };

export interface PassOutcome {
  result: "ok" | "failed" | "deferred";
  error: KataError | null;
  observed: Observed | null;
  /** The version the policy wanted, when one was found. */
  target: string | null;
  /** Why the merge of the active image could not be confirmed here (the --root limitation), or null. */
  unconfirmed: string | null;
  trust: "checksum" | "signature" | null;
}

/** Bounds one pass: download, switch, prune and a spare; a plan that wants more is a bug, not a reason to spin. */
const MAX_STEPS = 6;

export class Reconciler {
  private readonly deps: ReconcilerDeps;
  private lastPreflight: PreflightSummary | null = null;

  constructor(deps: ReconcilerDeps) {
    this.deps = deps;
  }

  private get name(): string {
    return this.deps.config.source.name;
  }

  private emit(event: ReconcileEvent): void {
    this.deps.onProgress?.(event);
  }

  async observe(): Promise<Observed> {
    const { paths, arch, store, link, sysext } = this.deps;
    return observe({ paths, name: this.name, arch, store, link, sysext });
  }

  /** One full pass: resolve against the source, fetch and verify what is missing, activate, prune. */
  async reconcile(): Promise<PassOutcome> {
    return this.pass(async (observed) => {
      this.emit({ kind: "state", state: "resolving" });
      const { target, trust } = await this.resolveRemote(observed.host, observed);
      return { target, trust };
    });
  }

  /** The boot path: no network; link a stored image that matches the booted OS, or unlink an incompatible one. */
  async boot(): Promise<PassOutcome> {
    return this.pass(async (observed) => ({ target: this.resolveOffline(observed), trust: null }), {
      requireActive: false,
    });
  }

  /** Switches back to the image that was active before the last switch, with the same safety as an upgrade. */
  async rollback(): Promise<PassOutcome> {
    return this.pass(async (observed) => {
      const previous = observed.state.previous;
      const image = observed.images.find((i) => i.file === previous);
      if (previous === null || image === undefined) {
        throw new KataError("activation-failed", "no previous image to roll back to", {
          remedy: "`kata-sysextctl versions` lists the images in the store",
        });
      }
      if (!image.compatible) {
        throw new KataError(
          "incompatible",
          `previous image ${previous} does not match this host: ${image.reasons.join("; ")}`,
        );
      }
      return { target: { version: image.version, file: image.file, remote: null }, trust: image.trust };
    });
  }

  /**
   * Fetches, verifies and inspects the image a not-yet-booted Flatcar release needs, without activating it.
   * Returns the stored image, or throws with the reasons none is compatible.
   */
  async stageFor(nextOs: HostRelease): Promise<StoredImage> {
    const observed = await this.observe();
    const { target } = await this.resolveRemote(nextOs, observed);
    if (target === null) throw new KataError("no-compatible-version", "no Kata version matches the next OS");
    if (target.remote !== null) await this.download(target, nextOs);
    const stored = await this.deps.store.get(target.file);
    if (stored === null) throw new KataError("store-failed", `${target.file} vanished from the store`);
    return stored;
  }

  private async pass(
    decide: (observed: Observed) => Promise<{ target: Target | null; trust: "checksum" | "signature" | null }>,
    { requireActive } = { requireActive: true },
  ): Promise<PassOutcome> {
    const log = this.deps.log.with({ KATA_SYSEXT_NAME: this.name });
    let observed: Observed | null = null;
    let targetVersion: string | null = null;
    let unconfirmed: string | null = null;
    let trust: "checksum" | "signature" | null = null;
    try {
      await this.deps.store.ensure();
      await this.deps.store.sweep();
      observed = await this.observe();
      const decision = await decide(observed);
      targetVersion = decision.target?.version ?? null;
      trust = decision.trust;
      for (let step = 0; step < MAX_STEPS; step++) {
        const action = nextAction(this.planInput(observed, decision.target));
        if (action === null) break;
        if (action.kind === "defer") {
          log.notice(`activation deferred: ${action.reason}`);
          return { result: "deferred", error: null, observed, target: targetVersion, unconfirmed, trust };
        }
        unconfirmed = (await this.carryOut(action, observed)) ?? unconfirmed;
        observed = await this.observe();
        if (action.kind === "download" && !observed.images.some((i) => i.file === action.target.file && i.compatible)) {
          break;
        }
      }
      const verdict = this.verdict(observed, decision.target, requireActive);
      if (verdict !== null) throw verdict;
      if (unconfirmed === null && this.deps.sysext.limitation !== null && !observed.merged) {
        unconfirmed = this.deps.sysext.limitation;
      }
      await this.remember({ result: "ok", error: null });
      return { result: "ok", error: null, observed, target: targetVersion, unconfirmed, trust };
    } catch (err) {
      const error = asKataError(err);
      log.error(error.message, { ERROR_CODE: error.code, REMEDY: error.remedy ?? "" });
      await this.remember({ result: "failed", error }).catch(() => undefined);
      return { result: "failed", error, observed, target: targetVersion, unconfirmed, trust };
    } finally {
      this.emit({ kind: "download", progress: null });
    }
  }

  /** Null when the pass reached its goal; else the error that says what is missing. */
  private verdict(observed: Observed, target: Target | null, requireActive: boolean): KataError | null {
    const active = observed.link.kind === "store" ? observed.link.file : null;
    if (observed.link.kind === "foreign") {
      return new KataError("activation-failed", observed.link.detail, {
        remedy: `remove ${this.deps.link.path} (kata-sysextd manages it) and run the pass again`,
      });
    }
    if (target === null) {
      return active === null && requireActive
        ? new KataError("no-compatible-version", "no compatible Kata image is available for this host")
        : null;
    }
    if (active !== target.file) {
      const quarantined = existsSync(join(this.deps.store.quarantineDir, target.file));
      return new KataError(
        quarantined ? "inspect-failed" : "activation-failed",
        `${target.file} is not active${quarantined ? " (it failed inspection and was quarantined)" : ""}`,
      );
    }
    return null;
  }

  private planInput(observed: Observed, target: Target | null) {
    return {
      link: observed.link,
      store: observed.images.map((i) => ({ file: i.file, version: i.version, compatible: i.compatible })),
      merged: observed.merged,
      mergeObservable: this.deps.sysext.limitation === null,
      target,
      sandboxesRunning: observed.sandboxesRunning,
      activation: this.deps.config.policy.activation,
      keep: this.deps.config.policy.keep,
      previous: observed.state.previous,
      staged: observed.state.nextBoot?.file ?? null,
    };
  }

  /** Carries out one step; returns the --root limitation note when a switch could not confirm its merge. */
  private async carryOut(action: Exclude<Action, { kind: "defer" }>, observed: Observed): Promise<string | null> {
    const log = this.deps.log.with({ KATA_SYSEXT_NAME: this.name });
    switch (action.kind) {
      case "download":
        await this.download(action.target, observed.host);
        return null;
      case "switch":
      case "remerge": {
        const to = action.kind === "switch" ? action.to : action.file;
        const from = action.kind === "switch" ? action.from : action.file;
        this.emit({ kind: "state", state: "activating" });
        const result = await this.switch(to, from, log);
        if (action.kind === "switch") {
          await writeState(this.deps.paths.stateFile, { ...observed.state, previous: from });
          const image = observed.images.find((i) => i.file === to);
          log.notice(`activated ${to}`, {
            MESSAGE_ID: MessageId.imageActivated,
            KATA_SYSEXT_VERSION: image?.version ?? "",
            KATA_SYSEXT_PREVIOUS: from ?? "",
          });
        }
        return result.unconfirmed;
      }
      case "unlink":
        // containerd must never point at a shim that is about to vanish: unregister first.
        await this.deps.runtime?.unregister();
        await this.deps.link.remove();
        await this.deps.sysext.refresh();
        log.warning(`removed the active link: ${action.reason}`);
        return null;
      case "prune":
        for (const file of action.files) await this.deps.store.remove(file);
        log.info(`pruned ${action.files.join(", ")}`);
        return null;
    }
  }

  private async switch(file: string, from: string | null, log: Logger) {
    const to = await this.deps.store.get(file);
    if (to === null) throw new KataError("store-failed", `${file} is not in the store any more`);
    const deps: ActivationDeps = {
      paths: this.deps.paths,
      name: this.name,
      link: this.deps.link,
      sysext: this.deps.sysext,
      log,
      preflight: this.deps.preflight,
      runtime: this.deps.runtime,
    };
    // The health stage compares against the verdict from before the switch, so take one if there is none yet.
    if (this.lastPreflight === null && this.deps.preflight !== undefined) {
      this.lastPreflight = await this.deps.preflight();
    }
    try {
      const result = await switchImage(deps, { to, from, preflightBefore: this.lastPreflight });
      if (result.preflight !== null) {
        this.lastPreflight = result.preflight;
        this.emit({ kind: "preflight", summary: result.preflight });
      }
      return result;
    } catch (err) {
      const error = asKataError(err);
      log.warning(`rolled back to ${from ?? "no image"}: ${error.message}`, {
        MESSAGE_ID: MessageId.rolledBack,
        ERROR_CODE: error.code,
      });
      throw error;
    }
  }

  private async resolveRemote(
    host: HostRelease,
    observed: Observed,
  ): Promise<{ target: Target | null; trust: "checksum" | "signature" }> {
    const { source, config, arch } = this.deps;
    const published = await source.manifest();
    const parsed = parseManifest(published.text);
    for (const rejected of parsed.rejected) {
      this.deps.log.warning(`SHA256SUMS line ${rejected.line} ignored: ${rejected.message}`);
    }
    const quarantined = (file: string) => existsSync(join(this.deps.store.quarantineDir, file));
    const resolution = resolve({
      host,
      arch,
      name: config.source.name,
      manifest: parsed.entries.filter((e) => !quarantined(e.file)),
      installed: observed.images.map((i) => i.version),
      policy: { versions: config.policy.versions, constraints: config.policy.constraints },
      metadata: this.parseMetadata(published.metadata),
    });
    if (!resolution.ok) {
      throw new KataError("no-compatible-version", `no acceptable Kata version: ${resolution.reasons.join("; ")}`, {
        remedy: "check [policy] versions and constraints against what the source publishes (`kata-sysextctl versions`)",
      });
    }
    const stored = observed.images.some((i) => i.file === resolution.file);
    if (!stored && resolution.sha256 === null) {
      throw new KataError("manifest-invalid", `${resolution.file} is not listed in SHA256SUMS and not in the store`);
    }
    return {
      target: {
        version: resolution.version,
        file: resolution.file,
        remote:
          stored || resolution.sha256 === null
            ? null
            : { url: source.imageUrl(resolution.file), sha256: resolution.sha256 },
      },
      trust: published.trust,
    };
  }

  /**
   * A metadata file that cannot be read fully fails the pass: a half-understood withdrawal or constraint must
   * never widen what gets installed. No file at all means no metadata.
   */
  private parseMetadata(text: string | null): ReleaseMetadata | undefined {
    if (text === null) return undefined;
    const parsed = parseMetadata(text, `the source's ${METADATA_FILE}`);
    if (!parsed.ok) throw parsed.error;
    for (const problem of parsed.value.problems) this.deps.log.warning(`${METADATA_FILE}: ${problem}`);
    return parsed.value;
  }

  /**
   * Offline choice at boot: the image staged for this release if it qualifies, else the active one if it still
   * does, else the newest stored image that does. "Qualifies" is resolveOffline: compatible and within policy.
   */
  private resolveOffline(observed: Observed): Target | null {
    const { config, arch } = this.deps;
    const acceptable = (images: typeof observed.images) =>
      resolveOffline({
        host: observed.host,
        arch,
        name: config.source.name,
        images: images.map((i) => ({ version: i.version, release: parseExtensionRelease(i.extensionRelease) })),
        policy: { versions: config.policy.versions, constraints: config.policy.constraints },
      });
    const staged = observed.state.nextBoot;
    const active = observed.link.kind === "store" ? observed.link.file : null;
    const preferred = [
      staged !== null && staged.flatcarVersion === observed.host.versionId ? staged.file : null,
      active,
    ];
    for (const file of preferred) {
      const image = observed.images.find((i) => i.file === file);
      if (image !== undefined && acceptable([image]).ok)
        return { version: image.version, file: image.file, remote: null };
    }
    const newest = acceptable(observed.images);
    const image = newest.ok ? observed.images.find((i) => i.version === newest.version) : undefined;
    if (!newest.ok) this.deps.log.notice(`no stored image qualifies for this host: ${newest.reasons.join("; ")}`);
    return image === undefined ? null : { version: image.version, file: image.file, remote: null };
  }

  /** Download, verify, inspect, then admit into the store, or quarantine. */
  private async download(target: Target, host: HostRelease): Promise<void> {
    if (target.remote === null) return;
    const log = this.deps.log.with({ KATA_SYSEXT_NAME: this.name, KATA_SYSEXT_VERSION: target.version });
    this.emit({ kind: "state", state: "fetching" });
    const incoming = this.deps.store.incomingDir;
    const downloaded = await this.deps.source.download(target.file, target.remote.sha256, incoming, (progress) =>
      this.emit({ kind: "download", progress }),
    );
    this.emit({ kind: "state", state: "verifying" });
    const contents = await inspectImage(downloaded.path, this.name);
    const problems = payloadProblems(contents, this.name);
    if (contents.extensionRelease !== null) {
      const decision = compatible(host, parseExtensionRelease(contents.extensionRelease), {
        name: this.name,
        arch: this.deps.arch,
      });
      if (!decision.compatible) problems.push(...decision.reasons);
    }
    if (problems.length > 0) {
      const where = await this.deps.store.quarantine(downloaded.path, target.file, problems.join("\n"));
      log.error(`${target.file} failed inspection and was quarantined at ${where}: ${problems.join("; ")}`, {
        MESSAGE_ID: MessageId.verificationFailed,
        ERROR_CODE: "inspect-failed",
      });
      throw new KataError("inspect-failed", `${target.file} failed inspection: ${problems.join("; ")}`, {
        remedy: `the image is kept at ${where} for inspection; the source publishes an image that cannot merge here`,
      });
    }
    await this.deps.store.admit(downloaded.path, {
      file: target.file,
      name: this.name,
      version: target.version,
      arch: this.deps.arch,
      sha256: downloaded.sha256,
      bytes: downloaded.bytes,
      trust: this.deps.source.trust,
      verifiedAt: this.deps.clock.now().toISOString(),
      extensionRelease: contents.extensionRelease ?? "",
      kataConfigs: contents.files.filter((f) => f.startsWith(`${KATA_DEFAULTS_DIR}/`)),
    });
    log.info(`verified and stored ${target.file} (${downloaded.bytes} bytes, ${this.deps.source.trust})`);
  }

  /** Records how the pass ended; read-modify-write, because a switch in this pass updated `previous`. */
  private async remember(last: { result: "ok" | "failed"; error: KataError | null }): Promise<void> {
    const state = await readState(this.deps.paths.stateFile);
    await writeState(this.deps.paths.stateFile, {
      ...state,
      lastReconcile: {
        at: this.deps.clock.now().toISOString(),
        result: last.result,
        error: last.error?.message ?? null,
        remedy: last.error?.remedy ?? null,
      },
    });
  }
}
