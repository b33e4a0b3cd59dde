// Confidential computing readiness, since Kata is the base of Confidential Containers: Intel TDX (kvm_intel
// parameter tdx=Y, as Kata's own availableGuestProtection reads it, and the CPU flag tdx_host_platform that says
// the firmware enabled it) and AMD SEV-SNP (kvm_amd parameter sev_snp=Y, /dev/sev, CPU flag sev_snp). Another
// vendor's CPU skips. A host that lacks a piece fails when a handler pinned in [containerd] handlers needs it;
// otherwise it skips, naming the missing piece: most nodes run no confidential guests, and their preflight must
// neither fail nor warn for it (the confidential handlers are simply not offered, see runtime-handlers).
import type { PreflightCheck } from "../../status.ts";
import { type Check, result } from "../check.ts";
import type { PreflightContext } from "../context.ts";
import { deviceExists } from "../device.ts";

const on = (v: string | null): boolean => v === "Y" || v === "1";

interface Technology {
  id: string;
  title: string;
  vendor: "intel" | "amd";
  /** The handler name token kata-deploy uses for it (kata-qemu-tdx, kata-qemu-snp). */
  token: string;
  /** Each piece: present, and how it reads. */
  pieces(ctx: PreflightContext, flags: Set<string>): Promise<{ ok: boolean; what: string }[]>;
  remedy: string;
}

function confidentialCheck(tech: Technology): Check {
  return {
    id: tech.id,
    group: "virtualisation",
    async run(ctx): Promise<PreflightCheck[]> {
      const cpu = await ctx.cpu();
      if (cpu === null) return [result(tech.id, "skip", "no /proc/cpuinfo to tell the CPU vendor")];
      if (cpu.vendor !== tech.vendor) {
        return [
          result(
            tech.id,
            "skip",
            `${tech.title} is for ${tech.vendor === "intel" ? "Intel" : "AMD"} CPUs; this one is ${cpu.vendorId}`,
          ),
        ];
      }
      const pieces = await tech.pieces(ctx, cpu.flags);
      const shown = pieces.map((p) => p.what).join(", ");
      const missing = pieces.filter((p) => !p.ok);
      if (missing.length === 0) return [result(tech.id, "pass", `${tech.title} ready: ${shown}`)];
      const pinned = (ctx.containerd?.handlers ?? []).filter((h) => h.split("-").includes(tech.token));
      const status = pinned.length > 0 ? "fail" : "skip";
      const needed =
        pinned.length > 0
          ? `; pinned handler${pinned.length === 1 ? "" : "s"} ${pinned.join(", ")} need${pinned.length === 1 ? "s" : ""} it`
          : "";
      return [
        result(
          tech.id,
          status,
          `${tech.title} not available: missing ${missing.map((p) => p.what).join(", ")}${needed}`,
          {
            remedy: tech.remedy,
          },
        ),
      ];
    },
  };
}

export const tdx = confidentialCheck({
  id: "tdx",
  title: "Intel TDX",
  vendor: "intel",
  token: "tdx",
  async pieces(ctx, flags) {
    const param = await (await ctx.modules()).param("kvm_intel", "tdx");
    return [
      { ok: on(param), what: `kvm_intel tdx=${param ?? "(absent)"}` },
      { ok: flags.has("tdx_host_platform"), what: "CPU flag tdx_host_platform" },
    ];
  },
  remedy: "enable TDX in the firmware (BIOS) and load kvm_intel with tdx=Y (a kernel with TDX host support)",
});

export const sevSnp = confidentialCheck({
  id: "sev-snp",
  title: "AMD SEV-SNP",
  vendor: "amd",
  token: "snp",
  async pieces(ctx, flags) {
    const param = await (await ctx.modules()).param("kvm_amd", "sev_snp");
    return [
      { ok: on(param), what: `kvm_amd sev_snp=${param ?? "(absent)"}` },
      { ok: await deviceExists(ctx, "/dev/sev"), what: "/dev/sev" },
      { ok: flags.has("sev_snp"), what: "CPU flag sev_snp" },
    ];
  },
  remedy: "enable SEV-SNP in the firmware (BIOS) and load kvm_amd with sev_snp=1 (a kernel with SNP host support)",
});
