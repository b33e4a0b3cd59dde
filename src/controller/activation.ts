// Switching the active image, as named stages with their undo beside them. Used for upgrades, rollbacks and
// re-merges alike, so every path that changes what is merged gets the same safety.

import type { RuntimeRegistration } from "../containerd/stage.ts";
import { KataError } from "../errors.ts";
import { pathExists } from "../files.ts";
import type { Logger } from "../log/logger.ts";
import type { HostPaths } from "../paths.ts";
import { runStages, type Stage } from "../stages.ts";
import type { PreflightSummary } from "../status.ts";
import type { ActiveLink } from "../store/link.ts";
import type { StoredImage } from "../store/store.ts";
import type { Sysext } from "../sysext/sysext.ts";

export interface ActivationDeps {
  paths: HostPaths;
  sysext: Sysext;
  log: Logger;
  /** Runs the preflight; absent when no preflight is configured. */
  preflight?: () => Promise<PreflightSummary>;
  /** Registers Kata's runtime handlers with containerd once the merge is confirmed; absent when off. */
  runtime?: RuntimeRegistration;
  /**
   * Starts a canary container with the handler just registered, for the Kata image the switch leaves active
   * (null: the switch moved companions only); throws when it fails. Absent when [health] canary is off.
   */
  canary?: (primary: StoredImage | null) => Promise<void>;
}

/** One member's link moving from one stored image to another. */
export interface LinkChange {
  name: string;
  link: ActiveLink;
  to: StoredImage;
  from: string | null;
  /** The Kata extension itself (its runtime handlers go to containerd), not a companion. */
  primary: boolean;
}

export interface SwitchRequest {
  changes: LinkChange[];
  /** The preflight verdict before the switch; a failure after it that was not there before rolls back. */
  preflightBefore: PreflightSummary | null;
}

export interface SwitchResult {
  /** Null when the merge was confirmed; else why it could not be (the --root limitation). */
  unconfirmed: string | null;
  preflight: PreflightSummary | null;
}

/**
 * Switches one or more members together: every link, then one merge, so Kata and its companions are never
 * merged in a combination nobody chose; a failure anywhere puts every link back and merges the old set.
 */
export async function switchImages(deps: ActivationDeps, req: SwitchRequest): Promise<SwitchResult> {
  const result: SwitchResult = { unconfirmed: null, preflight: null };
  const linkStages: Stage[] = req.changes.map((change, i) => ({
    name: `link ${change.name}`,
    run: () => change.link.point(change.to.file),
    // Undone in reverse, so the first link is put back last: then the old set is complete and merged once.
    undo: async () => {
      if (change.from === null) await change.link.remove();
      else await change.link.point(change.from);
      if (i === 0) await deps.sysext.refresh();
    },
  }));
  const primary = req.changes.find((c) => c.primary);
  const canary = deps.canary;
  const stages: Stage[] = [
    ...linkStages,
    { name: "merge", run: () => deps.sysext.refresh() },
    {
      name: "confirm-merge",
      run: async () => {
        for (const change of req.changes) {
          result.unconfirmed = (await confirmMerged({ ...deps, name: change.name })) ?? result.unconfirmed;
        }
      },
    },
    ...(deps.runtime === undefined || primary === undefined ? [] : [deps.runtime.stage(primary.to)]),
    {
      name: "health",
      run: async () => {
        if (deps.preflight === undefined) return;
        result.preflight = await deps.preflight();
        const newFailures = newlyFailed(req.preflightBefore, result.preflight);
        if (newFailures.length > 0) {
          throw new KataError("preflight-failed", `preflight fails after activation: ${newFailures.join("; ")}`, {
            remedy: "the previous image stays active; see `kata-sysextctl preflight` for the failing checks",
          });
        }
      },
    },
    // Last: a sandbox that starts is the only proof that the merged payload, the registration and the host work
    // together. Its failure undoes the stages above like any other.
    ...(canary === undefined ? [] : [{ name: "canary", run: () => canary(primary?.to ?? null) }]),
  ];
  await runStages(stages, deps.log.with({ KATA_SYSEXT_NAME: req.changes.map((c) => c.name).join(",") }));
  return result;
}

/** Paths two images would both put into the merged tree ("a.raw and b.raw: usr/bin/x"); directories aside. */
export function sharedFiles(images: readonly StoredImage[]): string[] {
  const owner = new Map<string, string>();
  const clashes: string[] = [];
  for (const image of images) {
    for (const path of image.files) {
      const other = owner.get(path);
      if (other !== undefined && other !== image.file) clashes.push(`${other} and ${image.file}: /${path}`);
      else owner.set(path, image.file);
    }
  }
  return clashes.slice(0, 10);
}

/**
 * The merge is confirmed when systemd-sysext lists the extension as merged and the image's own release file is
 * visible under /usr. Returns null when confirmed, the reason when it cannot be observed here, and throws
 * when it should have been merged but is not.
 */
export async function confirmMerged(
  deps: Pick<ActivationDeps, "paths" | "sysext"> & { name: string },
): Promise<string | null> {
  const merged = (await deps.sysext.merged()).includes(deps.name);
  const marker = deps.paths.host(`/usr/lib/extension-release.d/extension-release.${deps.name}`);
  const visible = await pathExists(marker);
  if (merged && visible) return null;
  if (deps.sysext.limitation !== null) return deps.sysext.limitation;
  throw new KataError(
    "merge-not-confirmed",
    `systemd-sysext refresh ran but ${deps.name} is not merged (${merged ? "listed" : "not listed"} as merged, ${marker} ${visible ? "visible" : "missing"})`,
    { remedy: "see `systemd-sysext status` and `journalctl -b -u systemd-sysext`; the image may not match this host" },
  );
}

function newlyFailed(before: PreflightSummary | null, after: PreflightSummary): string[] {
  const failedBefore = new Set((before?.checks ?? []).filter((c) => c.status === "fail").map((c) => c.id));
  // Without a verdict from before, any failure counts: we cannot claim the host was already broken.
  return after.checks.filter((c) => c.status === "fail" && !failedBefore.has(c.id)).map((c) => `${c.id}: ${c.detail}`);
}
