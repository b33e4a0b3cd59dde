// The check that decides: can a VM actually be created? /dev/kvm opens read-write, KVM_GET_API_VERSION is 12,
// KVM_CREATE_VM succeeds. CPU flags and module lists only explain the answer.
import type { PreflightCheck } from "../../status.ts";
import { type Check, result } from "../check.ts";
import type { PreflightContext } from "../context.ts";
import type { KvmProbe } from "../kvm-probe.ts";
import { kvmProviders } from "../modules.ts";

const ID = "kvm-usable";
const KVM_API_VERSION = 12;

export const kvmUsable: Check = {
  id: ID,
  group: "virtualisation",
  async run(ctx) {
    return [await judge(await ctx.kvm(), ctx)];
  },
};

/**
 * True when the probe could not answer: its helper is missing or failed, or we may not open /dev/kvm (not root).
 * Then nothing is known about KVM either way.
 */
export function kvmUntested(probe: KvmProbe): boolean {
  if (probe.kind === "helper-missing" || probe.kind === "helper-failed") return true;
  return probe.kind === "probed" && (probe.output.open === "EACCES" || probe.output.open === "EPERM");
}

/** True when the probe proved a VM can be created. */
export function kvmWorks(probe: KvmProbe): boolean {
  return (
    probe.kind === "probed" &&
    probe.output.open === "ok" &&
    probe.output.apiVersion === KVM_API_VERSION &&
    probe.output.createVm === "ok"
  );
}

async function judge(probe: KvmProbe, ctx: PreflightContext): Promise<PreflightCheck> {
  const loadRemedy =
    "load KVM (modprobe kvm_intel or kvm_amd) and enable virtualisation in the firmware; inside a VM, enable nested virtualisation on the outer hypervisor";
  switch (probe.kind) {
    case "absent":
      return result(ID, "fail", "/dev/kvm does not exist", { remedy: loadRemedy });
    case "not-chardev":
      return result(
        ID,
        "fail",
        `/dev/kvm is not a character device${ctx.fixtureRoot ? " (and holds no recorded kvm-probe result)" : ""}`,
        { remedy: "remove the file and let devtmpfs create the device (char 10:232) by loading kvm" },
      );
    case "helper-missing":
      return result(ID, "warn", "/dev/kvm exists, but the kvm-probe helper is not built: VM creation is untested", {
        remedy: "build it with `node scripts/build-helpers.mjs` (needs a C compiler) or set KATA_SYSEXTD_KVM_PROBE",
      });
    case "helper-failed":
      return result(ID, "warn", `/dev/kvm exists, but kvm-probe failed: ${probe.message}`, {
        remedy: "rebuild the helper with `node scripts/build-helpers.mjs`; run build/kvm-probe by hand to see why",
      });
    case "probed":
      break;
  }
  const { output } = probe;
  const recorded = probe.recorded ? " (recorded kvm-probe result: /dev/kvm in this root is a file, not a device)" : "";
  if (output.open !== "ok") {
    const denied = output.open === "EACCES" || output.open === "EPERM";
    return result(ID, "fail", `cannot open /dev/kvm read-write: ${output.open}${recorded}`, {
      remedy: denied
        ? "run as root, or give the runtime access: chgrp kvm /dev/kvm && chmod 0660 /dev/kvm"
        : loadRemedy,
    });
  }
  if (output.chardev === false) {
    return result(ID, "fail", `/dev/kvm is not a character device${recorded}`, {
      remedy: "remove the file and let devtmpfs create the device (char 10:232) by loading kvm",
    });
  }
  if (output.apiVersion !== KVM_API_VERSION) {
    return result(
      ID,
      "fail",
      `KVM_GET_API_VERSION returned ${output.apiVersion}, expected ${KVM_API_VERSION}${recorded}`,
      {
        remedy: "this kernel's KVM is not the stable API; boot a mainline-compatible kernel",
      },
    );
  }
  if (output.createVm === "EBUSY") {
    return result(ID, "fail", `KVM_CREATE_VM failed with EBUSY: another hypervisor holds VT-x/AMD-V${recorded}`, {
      remedy: "stop the other hypervisor (VirtualBox, VMware, …) or unload its kernel module, then retry",
    });
  }
  if (output.createVm !== "ok") {
    return result(ID, "fail", `KVM_CREATE_VM failed with ${output.createVm}${recorded}`, {
      remedy: "check dmesg for KVM errors; ENOMEM means the host is out of memory",
    });
  }
  const cpu = await ctx.cpu();
  const hardware = cpu !== null && (cpu.flags.has("vmx") || cpu.flags.has("svm"));
  const providers = kvmProviders(await ctx.modules());
  const note = hardware
    ? ""
    : `; nested/paravirtual: no vmx/svm CPU flag, KVM provided by ${providers.join(", ") || "an unidentified module"}`;
  return result(ID, "pass", `/dev/kvm: API ${KVM_API_VERSION}, KVM_CREATE_VM ok${note}${recorded}`);
}
