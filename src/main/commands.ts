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
  if (outcome.result === "ok" && active === "none") {
    // Done as the boot step defines it (nothing incompatible stays linked), but Kata cannot run yet.
    ctx.log.warning(
      `${what}: ok, but no Kata image is active: none stored fits this release; kata-sysextd fetches one (kata-sysextctl status says how that goes)`,
    );
  } else if (outcome.result === "ok") {
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
  const outcome = await new Reconciler(composeReconciler(ctx)).run({ kind: "reconcile" });
  report(ctx, "reconcile", outcome);
  return exitCode(outcome);
}

export async function runBoot(given: CommandContext): Promise<number> {
  const ctx = await withHostFields(given);
  const outcome = await new Reconciler(composeReconciler(ctx)).run({ kind: "boot" });
  report(ctx, "boot", outcome);
  return exitCode(outcome);
}
