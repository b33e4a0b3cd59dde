// Before Flatcar reboots into an update, stage the Kata image that update needs (what Flatcar does for its own
// extensions and nobody did for Kata: Flatcar issue 2426). Triggered by update_engine reaching
// UPDATED_NEED_REBOOT; retried on every pass until staged; cleared once the machine runs that release.
import { skippedByMember, Unresolvable } from "../controller/decide.ts";
import type { Controller } from "../controller/reconciler.ts";
import type { Staged } from "../controller/staging.ts";
import { skippedReleases } from "../controller/versions.ts";
import { asKataError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { MessageId } from "../log/logger.ts";
import { type HostRelease, hostAfterUpdate } from "../release/os-release.ts";
import { compareVersions } from "../release/version.ts";
import type { SkippedRelease } from "../status.ts";
import type { NextBoot } from "../store/state.ts";

export interface NextBootDeps {
  reconciler: Pick<Controller, "fetchForRelease" | "records">;
  log: Logger;
}

/**
 * Fetches and verifies the image for `version` into the store and records it as the next boot's image. Candidates
 * that fail are skipped and remembered as in a pass (controller/staging.ts): the newest good one is staged.
 */
export async function prepareNextBoot(deps: NextBootDeps, current: HostRelease, version: string): Promise<NextBoot> {
  const log = deps.log.with({ FLATCAR_VERSION_ID: current.versionId ?? "", FLATCAR_NEXT_VERSION: version });
  const stagedFor = ({ images, skipped }: Staged): NextBoot => ({
    flatcarVersion: version,
    files: Object.fromEntries(images.map((i) => [i.name, i.file])),
    staged: true,
    reason: null,
    stagedOn: current.versionId,
    skipped,
  });
  let next: NextBoot;
  try {
    // Recorded while the store lock is held, so no pass prunes the images before they count as staged.
    const staged = await deps.reconciler.fetchForRelease(hostAfterUpdate(current, version), (s) =>
      deps.reconciler.records.recordNextBoot(stagedFor(s)),
    );
    next = stagedFor(staged);
    const { images, skipped } = staged;
    // Kata first: the journal names its version.
    const [image] = images;
    if (image === undefined) throw new Error("fetchForRelease returned no image");
    const newer = skippedReleases(skipped).filter(
      (s) => s.member !== image.name || compareVersions(s.version, image.version) > 0,
    );
    const passedOver = newer.length === 0 ? "" : `; newer releases were skipped: ${describe(newer)}`;
    log.notice(`staged Kata ${image.version} for Flatcar ${version}${passedOver}`, {
      MESSAGE_ID: MessageId.nextBootStaged,
      KATA_SYSEXT_VERSION: image.version,
    });
  } catch (err) {
    const error = asKataError(err);
    next = {
      flatcarVersion: version,
      files: {},
      staged: false,
      reason: error.message,
      stagedOn: current.versionId,
      skipped: err instanceof Unresolvable ? skippedByMember(err.candidates) : {},
    };
    await deps.reconciler.records.recordNextBoot(next);
    const loud = error.code === "no-compatible-version" || error.code === "incompatible";
    log.warning(`nothing staged for Flatcar ${version}: ${error.message}`, {
      ...(loud ? { MESSAGE_ID: MessageId.incompatibleNextOs } : {}),
      ERROR_CODE: error.code,
    });
  }
  return next;
}

const describe = (skipped: SkippedRelease[]) => skipped.map((s) => `${s.member} ${s.version} (${s.reason})`).join("; ");
