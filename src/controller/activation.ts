// Switching the active image, as named stages with their undo beside them. Used for upgrades, rollbacks and
// re-merges alike, so every path that changes what is merged gets the same safety.
import { access } from "node:fs/promises";
import type { RuntimeRegistration } from "../containerd/stage.ts";
import { KataError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { HostPaths } from "../paths.ts";
import type { PreflightSummary } from "../status.ts";
import type { ActiveLink } from "../store/link.ts";
import type { StoredImage } from "../store/store.ts";
import type { Sysext } from "../sysext/sysext.ts";
import { runStages, type Stage } from "./transaction.ts";

export interface ActivationDeps {
  paths: HostPaths;
  name: string;
  link: ActiveLink;
  sysext: Sysext;
  log: Logger;
  /** Runs the preflight; absent when no preflight is configured. */
  preflight?: () => Promise<PreflightSummary>;
  /** Registers the image's runtime handlers with containerd once the merge is confirmed; absent when off. */
  runtime?: RuntimeRegistration;
}

export interface SwitchRequest {
  to: StoredImage;
  from: string | null;
  /** The preflight verdict before the switch; a failure after it that was not there before rolls back. */
  preflightBefore: PreflightSummary | null;
}

export interface SwitchResult {
  /** Null when the merge was confirmed; else why it could not be (the --root limitation). */
  unconfirmed: string | null;
  preflight: PreflightSummary | null;
}

export async function switchImage(deps: ActivationDeps, req: SwitchRequest): Promise<SwitchResult> {
  const result: SwitchResult = { unconfirmed: null, preflight: null };
  const stages: Stage[] = [
    {
      name: "link",
      run: () => deps.link.point(req.to.file),
      // The merge stage after this one may have run, so putting the old link back also re-merges it.
      undo: async () => {
        if (req.from === null) await deps.link.remove();
        else await deps.link.point(req.from);
        await deps.sysext.refresh();
      },
    },
    { name: "merge", run: () => deps.sysext.refresh() },
    {
      name: "confirm-merge",
      run: async () => {
        result.unconfirmed = await confirmMerged(deps);
      },
    },
    ...(deps.runtime === undefined ? [] : [deps.runtime.stage(req.to)]),
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
  ];
  await runStages(stages, deps.log.with({ KATA_SYSEXT_NAME: deps.name }));
  return result;
}

/**
 * The merge is confirmed when systemd-sysext lists the extension as merged and the image's own release file is
 * visible under /usr. Returns null when confirmed, the reason when it cannot be observed here, and throws
 * when it should have been merged but is not.
 */
export async function confirmMerged(deps: Pick<ActivationDeps, "paths" | "name" | "sysext">): Promise<string | null> {
  const merged = (await deps.sysext.merged()).includes(deps.name);
  const marker = deps.paths.host(`/usr/lib/extension-release.d/extension-release.${deps.name}`);
  const visible = await access(marker).then(
    () => true,
    () => false,
  );
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
