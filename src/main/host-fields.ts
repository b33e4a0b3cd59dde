// FLATCAR_VERSION_ID on every journal record of a command or the daemon. Kept apart from compose.ts so the
// daemon can use it before loading the reconciler (start-up time to the first answer on /status).
import type { Logger } from "../log/logger.ts";
import type { HostPaths } from "../paths.ts";
import { type HostRelease, readHostReleaseUnder } from "../release/os-release.ts";

/** The booted OS's os-release, or null when it cannot be read. It changes only by rebooting. */
export function readBootedHost(paths: HostPaths): Promise<HostRelease | null> {
  return readHostReleaseUnder(paths.root).catch(() => null);
}

/**
 * The context with FLATCAR_VERSION_ID of the booted OS on every journal record (unchanged when the os-release
 * cannot be read). The booted release cannot change under a running command or daemon: it changes by rebooting.
 */
export async function withHostFields<T extends { paths: HostPaths; log: Logger }>(
  ctx: T,
  booted?: HostRelease | null,
): Promise<T> {
  const host = booted === undefined ? await readBootedHost(ctx.paths) : booted;
  return host?.versionId ? { ...ctx, log: ctx.log.with({ FLATCAR_VERSION_ID: host.versionId }) } : ctx;
}
