// FLATCAR_VERSION_ID on every journal record of a command or the daemon. Kept apart from commands.ts so the
// daemon can use it before loading the reconciler (start-up time to the first answer on /status).
import type { Logger } from "../log/logger.ts";
import type { HostPaths } from "../paths.ts";
import { readHostReleaseUnder } from "../release/os-release.ts";

/**
 * The context with FLATCAR_VERSION_ID of the booted OS on every journal record (unchanged when the os-release
 * cannot be read). The booted release cannot change under a running command or daemon: it changes by rebooting.
 */
export async function withHostFields<T extends { paths: HostPaths; log: Logger }>(ctx: T): Promise<T> {
  const host = await readHostReleaseUnder(ctx.paths.root).catch(() => null);
  return host?.versionId ? { ...ctx, log: ctx.log.with({ FLATCAR_VERSION_ID: host.versionId }) } : ctx;
}
