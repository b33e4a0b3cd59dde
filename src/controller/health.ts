// Whether Kata works here, and what the cluster is told: the canary (a real sandbox with the active image) and
// the node's readiness (NFD's feature file). Without a canary, a pass that reached its goal with Kata active says
// ready; with one, only a canary that passed does.
import type { CanaryPhase, CanaryResult } from "../canary/canary.ts";
import { KataError } from "../errors.ts";
import { MessageId } from "../log/logger.ts";
import { activeFile } from "../store/link.ts";
import type { StoredImage } from "../store/store.ts";
import type { ReconcilerDeps } from "./deps.ts";
import { type Observed, primaryOf } from "./observe.ts";

export type HealthDeps = Pick<ReconcilerDeps, "canary" | "cluster" | "log" | "store" | "members" | "onProgress">;

export class Health {
  private readonly deps: HealthDeps;

  constructor(deps: HealthDeps) {
    this.deps = deps;
  }

  /** The primary member's active image as the store describes it, or null. */
  async activeImage(observed: Observed): Promise<StoredImage | null> {
    const file = activeFile(primaryOf(observed).link);
    return file === null ? null : this.deps.store.get(file);
  }

  /** Tells the cluster what a pass that reached its goal found, when no canary is there to prove it. */
  async tellClusterWithoutCanary(observed: Observed): Promise<void> {
    const cluster = this.deps.cluster;
    if (cluster === undefined || this.deps.canary !== undefined) return;
    const kata = primaryOf(observed);
    const active = activeFile(kata.link);
    const version = kata.images.find((i) => i.file === active)?.version ?? null;
    if (version === null) await cluster.withdraw("no Kata image is active");
    else await cluster.publish({ ready: true, version, handlers: [] });
  }

  /** A switch's canary stage: for the Kata image it leaves active; a failure throws, and the switch is undone. */
  async canaryStage(primary: StoredImage | null, observed: Observed): Promise<void> {
    const result = await this.runCanary(primary ?? (await this.activeImage(observed)));
    if (result.outcome === "failed") {
      throw new KataError("canary-failed", `canary (${result.handler}) failed at ${result.step}: ${result.reason}`, {
        remedy: `the previous image stays active and ${result.image ?? "the new image"} is held; \`kata-sysextctl canary\` runs it again`,
      });
    }
  }

  /**
   * Runs the canary for `image` (the active Kata image, or the one a switch moves to), reports the result, and
   * tells the cluster: ready with the handler once it passed, not ready when it failed.
   */
  async runCanary(image: StoredImage | null, onProgress?: (phase: CanaryPhase) => void): Promise<CanaryResult> {
    const probe = this.deps.canary;
    if (probe === undefined) throw new KataError("canary-failed", "the canary is off ([health] canary = false)");
    const result = await probe.run(image, onProgress);
    this.deps.onProgress?.({ kind: "canary", result });
    const primary = this.deps.members[0]?.name ?? "";
    const log = this.deps.log.with({ KATA_SYSEXT_NAME: primary, KATA_CANARY_HANDLER: result.handler });
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

  /** Removes what canaries of a killed daemon left in containerd; a no-op without a canary. */
  async sweepCanaries(): Promise<void> {
    await this.deps.canary?.sweep();
  }

  /** Tells the cluster this node is not ready for Kata (the daemon stops cleanly; a switch starts). */
  async withdrawReadiness(why: string): Promise<void> {
    await this.deps.cluster?.withdraw(why);
  }
}
