// The one-shot commands: `kata-sysextd --once` and `kata-sysextd boot`. Builds the adapters from the
// configuration and runs one pass.
import { systemClock, systemRandom } from "../clock.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log/logger.ts";
import type { HostPaths } from "../paths.ts";
import { runPreflight } from "../preflight/run.ts";
import { hostArchitecture } from "../release/os-release.ts";
import { ActiveLink } from "../store/link.ts";
import { ImageStore } from "../store/store.ts";
import { binarySysext, type Sysext } from "../sysext/sysext.ts";
import { type PassOutcome, Reconciler, type ReconcilerDeps } from "./reconciler.ts";
import { urlFileSource } from "./source.ts";

export interface CommandContext {
  paths: HostPaths;
  config: Config;
  configFile: string;
  log: Logger;
  /** Overrides the systemd-sysext adapter (the daemon passes the D-Bus one on a real host). */
  sysext?: Sysext;
}

export function buildReconcilerDeps(ctx: CommandContext): ReconcilerDeps {
  const { paths, config, log } = ctx;
  const arch = config.source.arch ?? hostArchitecture();
  const clock = systemClock;
  const random = systemRandom;
  return {
    paths,
    config,
    arch,
    log,
    clock,
    random,
    store: new ImageStore(paths.storeDir, paths.quarantineDir),
    link: new ActiveLink(paths.activeLink(config.source.name), paths.storeDir),
    sysext: ctx.sysext ?? binarySysext(paths),
    source: urlFileSource(config, { clock, random, log }),
    preflight: () =>
      runPreflight({
        paths,
        containerdDropIn: config.containerd.enabled ? paths.host(config.containerd.dropIn) : null,
      }),
  };
}

/** Exit status per CONTRACT.md: 0 active and verified, 1 failed (deferred counts: the target is not active). */
export function exitCode(outcome: PassOutcome): number {
  return outcome.result === "ok" ? 0 : 1;
}

function report(ctx: CommandContext, what: string, outcome: PassOutcome): void {
  const active = outcome.observed?.link.kind === "store" ? outcome.observed.link.file : "none";
  if (outcome.result === "ok") {
    ctx.log.info(`${what}: ok, active ${active}${outcome.unconfirmed ? ` (${outcome.unconfirmed})` : ""}`);
  } else if (outcome.result === "deferred") {
    ctx.log.notice(`${what}: deferred, active ${active}`);
  } else {
    ctx.log.error(`${what}: failed: ${outcome.error?.message ?? "unknown"}`, { REMEDY: outcome.error?.remedy ?? "" });
  }
}

export async function runOnce(ctx: CommandContext): Promise<number> {
  const outcome = await new Reconciler(buildReconcilerDeps(ctx)).reconcile();
  report(ctx, "reconcile", outcome);
  return exitCode(outcome);
}

export async function runBoot(ctx: CommandContext): Promise<number> {
  const outcome = await new Reconciler(buildReconcilerDeps(ctx)).boot();
  report(ctx, "boot", outcome);
  return exitCode(outcome);
}
