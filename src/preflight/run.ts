// The preflight: every check, concurrently, grouped for display, with one verdict per configured hypervisor.
import { type Clock, systemClock } from "../clock.ts";
import type { HypervisorVerdict, PreflightCheck, PreflightSummary } from "../status.ts";
import { type Check, type CheckGroup, result } from "./check.ts";
import { abi } from "./checks/abi.ts";
import { cgroup } from "./checks/cgroup.ts";
import { sevSnp, tdx } from "./checks/confidential.ts";
import { containerd } from "./checks/containerd.ts";
import { cpu } from "./checks/cpu.ts";
import { devices } from "./checks/devices.ts";
import { runtimeHandlers } from "./checks/handlers.ts";
import { kataConfig } from "./checks/kata-config.ts";
import { kvmModules } from "./checks/kvm-modules.ts";
import { kvmParams } from "./checks/kvm-params.ts";
import { kvmUsable } from "./checks/kvm-usable.ts";
import { opt } from "./checks/opt.ts";
import { payload } from "./checks/payload.ts";
import { selinux } from "./checks/selinux.ts";
import { shm } from "./checks/shm.ts";
import { createContext, type PreflightOptions } from "./context.ts";

/** Every check, in display order. */
export const CHECKS: readonly Check[] = [
  cpu,
  kvmModules,
  kvmParams,
  kvmUsable,
  tdx,
  sevSnp,
  devices,
  kataConfig,
  payload,
  shm,
  abi,
  selinux,
  cgroup,
  containerd,
  runtimeHandlers,
  opt,
];

export const GROUP_TITLES: Record<CheckGroup, string> = {
  virtualisation: "Virtualisation",
  devices: "Devices",
  payload: "Kata payload",
  abi: "Binary compatibility (ABI)",
  selinux: "SELinux",
  host: "Host integration",
};

export type GroupedCheck = PreflightCheck & { group: CheckGroup };

export interface PreflightReport extends PreflightSummary {
  checks: GroupedCheck[];
  durationMs: number;
}

export async function runPreflight(opts: PreflightOptions & { clock?: Clock }): Promise<PreflightReport> {
  const clock = opts.clock ?? systemClock;
  const started = clock.monotonicMs();
  const ctx = createContext(opts);
  const perCheck = await Promise.all(
    CHECKS.map(async (check): Promise<GroupedCheck[]> => {
      let results: PreflightCheck[];
      try {
        results = await check.run(ctx);
      } catch (err) {
        // A crashing check is a finding about the preflight, never a reason to lose every other answer.
        results = [
          result(check.id, "fail", `check could not run: ${err instanceof Error ? err.message : String(err)}`, {
            remedy: "rerun with --root pointing at a readable tree; report a bug if it persists",
          }),
        ];
      }
      return results.map((r) => ({ ...r, group: check.group }));
    }),
  );
  const checks = perCheck.flat();
  const failed = checks.filter((c) => c.status === "fail").length;
  const warnings = checks.filter((c) => c.status === "warn").length;
  const { hypervisors } = await ctx.kata();
  return {
    ok: failed === 0,
    failed,
    warnings,
    checks,
    hypervisors: hypervisors.map((h) => verdictFor(h.name, checks)),
    durationMs: Math.round(clock.monotonicMs() - started),
  };
}

/** A hypervisor can run Kata when no check about it, and no check about the whole host, failed. */
export function verdictFor(name: string, checks: readonly PreflightCheck[]): HypervisorVerdict {
  const relevant = checks.filter((c) => c.hypervisor === name || c.hypervisor === null || c.hypervisor === undefined);
  const failed = [...new Set(relevant.filter((c) => c.status === "fail").map((c) => c.id))];
  const warned = relevant.filter((c) => c.status === "warn").length;
  if (failed.length > 0) return { name, ok: false, verdict: `${name}: cannot run Kata: ${failed.join(", ")} failed` };
  const note = warned > 0 ? ` (${warned} warning${warned === 1 ? "" : "s"})` : "";
  return { name, ok: true, verdict: `${name}: ready${note}` };
}
