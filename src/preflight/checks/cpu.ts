// CPU vendor and flags. They explain the KVM verdict but do not decide it: a paravirtual KVM (kvm_pvm) works
// without vmx/svm, so a missing flag only fails when KVM is not usable either.
import type { PreflightCheck } from "../../status.ts";
import { type Check, result } from "../check.ts";
import { kvmProviders } from "../modules.ts";
import { kvmUntested, kvmWorks } from "./kvm-usable.ts";

const VENDOR = { intel: "Intel", amd: "AMD", other: "unknown vendor" } as const;

export const cpu: Check = {
  id: "cpu",
  group: "virtualisation",
  async run(ctx) {
    const info = await ctx.cpu();
    if (info === null) {
      return [
        result("cpu-features", "skip", "no readable /proc/cpuinfo"),
        result("cpu-virtualization", "skip", "no readable /proc/cpuinfo"),
      ];
    }
    const out: PreflightCheck[] = [];
    const missing = ["lm", "sse4_1"].filter((f) => !info.flags.has(f));
    out.push(
      missing.length === 0
        ? result("cpu-features", "pass", `${VENDOR[info.vendor]} (${info.vendorId}): lm, sse4_1 present`)
        : result("cpu-features", "fail", `${VENDOR[info.vendor]} CPU lacks ${missing.join(", ")}`, {
            remedy:
              "Kata's x86-64 guests need a 64-bit CPU with SSE4.1; use a newer CPU or expose these flags to the VM",
          }),
    );

    const flag = info.flags.has("vmx") ? "vmx" : info.flags.has("svm") ? "svm" : null;
    const nested = info.flags.has("hypervisor") ? "; running as a guest (nested virtualisation)" : "";
    if (flag !== null) {
      const tech = flag === "vmx" ? "Intel VT-x (vmx)" : "AMD-V (svm)";
      out.push(result("cpu-virtualization", "pass", `${tech}${nested}`));
    } else if (kvmUntested(await ctx.kvm())) {
      // Whether KVM works is kvm-usable's question, and it could not be answered: no verdict here either.
      out.push(
        result("cpu-virtualization", "warn", `no vmx/svm flag, and whether KVM works could not be tested${nested}`, {
          remedy: "see kvm-usable: it says why /dev/kvm could not be probed",
        }),
      );
    } else if (kvmWorks(await ctx.kvm())) {
      const providers = kvmProviders(await ctx.modules());
      out.push(
        result(
          "cpu-virtualization",
          "pass",
          `no vmx/svm flag, yet KVM works: nested/paravirtual KVM via ${providers.join(", ") || "an unidentified provider"}${nested}`,
        ),
      );
    } else {
      out.push(
        result("cpu-virtualization", "fail", `no vmx/svm flag and no usable KVM${nested}`, {
          remedy: nested
            ? "enable nested virtualisation on the outer hypervisor (expose vmx/svm to this VM) or load a paravirtual KVM module such as kvm_pvm"
            : "enable VT-x/AMD-V in the firmware setup",
        }),
      );
    }
    return out;
  },
};
