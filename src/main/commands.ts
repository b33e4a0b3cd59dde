// The one-shot commands `kata-sysextd --once` and `kata-sysextd boot`: connect to systemd where it is this
// machine's, wire a Reconciler (compose.ts), run one pass, report it and map it to the exit status.
import { systemClock, systemRandom } from "../clock.ts";
import { primaryOf } from "../controller/observe.ts";
import { type PassOutcome, Reconciler } from "../controller/reconciler.ts";
import { activeFile } from "../store/link.ts";
import { type CommandContext, composeReconciler } from "./compose.ts";
import { withHostFields } from "./host-fields.ts";
import { connectSystemd } from "./systemd.ts";

/** Exit status per docs/interface.md: 0 active and verified, 1 failed (deferred counts: the target is not active). */
export function exitCode(outcome: PassOutcome): number {
  return outcome.result === "ok" ? 0 : 1;
}

function report(ctx: CommandContext, what: string, outcome: PassOutcome): void {
  const active = (outcome.observed ? activeFile(primaryOf(outcome.observed).link) : null) ?? "none";
  if (outcome.result === "ok") {
    ctx.log.info(`${what}: ok, active ${active}${outcome.unconfirmed ? ` (${outcome.unconfirmed})` : ""}`);
  } else if (outcome.result === "deferred") {
    ctx.log.notice(`${what}: deferred, active ${active}`);
  } else {
    ctx.log.error(`${what}: failed: ${outcome.error?.message ?? "unknown"}`, { REMEDY: outcome.error?.remedy ?? "" });
  }
}

/** Runs `--once` or `boot`. On the real host merges and containerd restarts go through systemd; under --root not. */
export async function runCommand(verb: "once" | "boot", given: CommandContext): Promise<number> {
  const systemd =
    given.paths.root === "/"
      ? await connectSystemd({ clock: systemClock, random: systemRandom, log: given.log, manageUnits: true })
      : null;
  try {
    const ctx = { ...given, systemd: systemd?.manager ?? null };
    return verb === "boot" ? await runBoot(ctx) : await runOnce(ctx);
  } finally {
    await systemd?.close();
  }
}

export async function runOnce(given: CommandContext): Promise<number> {
  const ctx = await withHostFields(given);
  const outcome = await new Reconciler(composeReconciler(ctx)).reconcile();
  report(ctx, "reconcile", outcome);
  return exitCode(outcome);
}

export async function runBoot(given: CommandContext): Promise<number> {
  const ctx = await withHostFields(given);
  const reconciler = new Reconciler(composeReconciler(ctx));
  const outcome = await reconciler.boot();
  report(ctx, "boot", outcome);
  // The reboot kata-sysextd asked for has happened. A pass that reached its goal withdrew the request already;
  // one that failed withdraws it too, or a sentinel on a persistent path would have the node rebooted again and
  // again. A pass that deferred (sandboxes already running) asked anew.
  if (outcome.result === "failed") await reconciler.settleReboot(null, "the reboot it asked for has happened");
  // Booted into the release the image was staged for: the next boot is now this boot.
  const observed = outcome.observed;
  if (outcome.result === "ok" && observed?.state.nextBoot?.flatcarVersion === observed?.host.versionId) {
    await reconciler.forgetNextBoot();
  }
  return exitCode(outcome);
}
