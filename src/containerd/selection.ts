// Which shipped runtime handlers this host can run, as a pure decision over facts gathered elsewhere (facts.ts):
// a handler is offered to Kubernetes only when a sandbox started with it can come up here. A RuntimeClass whose
// handler is missing is never scheduled onto the node; one that is present but cannot run fails every pod at
// sandbox start. The operator may pin the list ([containerd] handlers); a pinned handler that cannot run keeps
// its reason, and the preflight fails on it.

import { VHOST_VSOCK } from "../preflight/checks/devices.ts";

/** What a handler needs, read from its Kata configuration (drop-ins merged). */
export interface HandlerFacts {
  name: string;
  configPath: string;
  /** [hypervisor.<name>]: qemu, clh, firecracker, dragonball, stratovirt, remote; null when unreadable. */
  hypervisor: string | null;
  /** Why its configuration cannot be used (unreadable, not TOML, no [hypervisor.*]); null when fine. */
  configProblem: string | null;
  /** The hypervisor binary (`path`) and why it cannot run here, or null when it can. */
  binary: { path: string; problem: string | null } | null;
  /** Confidential computing the guest needs from the host. */
  confidential: "tdx" | "snp" | "sev" | null;
  /** A GPU passthrough variant (nvidia-gpu). */
  gpu: boolean;
}

/** What the host offers, all read under --root. */
export interface HostFacts {
  cpuVendor: "intel" | "amd" | "other" | null;
  cpuFlags: readonly string[];
  kvm: boolean;
  vhostVsock: boolean;
  /** containerd's configuration sets up the devmapper snapshotter (plugins…devmapper with a pool_name). */
  devmapper: boolean;
  /** kvm_intel's tdx, kvm_amd's sev_snp and sev parameters as read ("Y", "N", "1"), null when absent. */
  params: { tdx: string | null; sevSnp: string | null; sev: string | null };
  devSev: boolean;
  /** /dev/vfio/<group> nodes (not /dev/vfio/vfio itself) and /dev/nvidia<N> nodes. */
  vfioGroups: number;
  nvidia: boolean;
}

export interface HandlerVerdict {
  name: string;
  configPath: string | null;
  registered: boolean;
  /** Why it is not registered; null when it is. */
  reason: string | null;
  /** Named in [containerd] handlers. */
  pinned: boolean;
  /** The snapshotter its containers need (kata-fc: devmapper). */
  snapshotter?: string;
}

const on = (v: string | null): boolean => v === "Y" || v === "1";

/** Why `h` cannot run on `host`, the first missing piece; null when it can. */
export function cannotRun(h: HandlerFacts, host: HostFacts): string | null {
  if (h.configProblem !== null) return h.configProblem;
  if (h.hypervisor === "remote") return null; // peer pods: the VM runs elsewhere
  if (h.binary === null) return `its configuration ${h.configPath} names no hypervisor binary (path)`;
  if (h.binary.problem !== null) return `hypervisor ${h.binary.path}: ${h.binary.problem}`;
  if (!host.kvm) return "no /dev/kvm";
  if (VHOST_VSOCK.has(h.hypervisor ?? "") && !host.vhostVsock) {
    return `${h.hypervisor} talks to the guest over vhost-vsock: no /dev/vhost-vsock`;
  }
  if (h.hypervisor === "firecracker" && !host.devmapper) {
    return "Firecracker needs the devmapper snapshotter, and containerd's configuration sets none up (plugins devmapper pool_name)";
  }
  const flag = (f: string) => host.cpuFlags.includes(f);
  if (h.confidential === "tdx") {
    if (host.cpuVendor !== "intel") return `Intel TDX needs an Intel CPU (this one is ${host.cpuVendor ?? "unknown"})`;
    if (!on(host.params.tdx)) return `kvm_intel parameter tdx is ${host.params.tdx ?? "absent"}, not Y`;
    if (!flag("tdx_host_platform")) return "the CPU flag tdx_host_platform is missing (TDX not enabled in firmware)";
  }
  if (h.confidential === "snp" || h.confidential === "sev") {
    const what = h.confidential === "snp" ? "AMD SEV-SNP" : "AMD SEV";
    if (host.cpuVendor !== "amd") return `${what} needs an AMD CPU (this one is ${host.cpuVendor ?? "unknown"})`;
    const [param, value] = h.confidential === "snp" ? ["sev_snp", host.params.sevSnp] : ["sev", host.params.sev];
    if (!on(value)) return `kvm_amd parameter ${param} is ${value ?? "absent"}, not Y`;
    if (!host.devSev) return "no /dev/sev (the AMD secure processor device)";
  }
  if (h.gpu && host.vfioGroups === 0 && !host.nvidia) {
    return "no GPU to pass through: no VFIO group under /dev/vfio and no /dev/nvidia* device";
  }
  return null;
}

/** One verdict per shipped handler (in their order), then any pinned name the image does not ship. */
export function selectHandlers(
  handlers: readonly HandlerFacts[],
  host: HostFacts,
  pinned: readonly string[] | null,
): HandlerVerdict[] {
  const verdicts = handlers.map((h): HandlerVerdict => {
    const isPinned = pinned?.includes(h.name) ?? false;
    const snapshotter = h.hypervisor === "firecracker" ? { snapshotter: "devmapper" } : {};
    if (pinned !== null && !isPinned) {
      return {
        name: h.name,
        configPath: h.configPath,
        registered: false,
        reason: "not in [containerd] handlers",
        pinned: false,
      };
    }
    const reason = cannotRun(h, host);
    return {
      name: h.name,
      configPath: h.configPath,
      registered: reason === null,
      reason,
      pinned: isPinned,
      ...snapshotter,
    };
  });
  const shipped = new Set(handlers.map((h) => h.name));
  for (const name of pinned ?? []) {
    if (!shipped.has(name)) {
      verdicts.push({
        name,
        configPath: null,
        registered: false,
        reason: "the active Kata image ships no configuration for it",
        pinned: true,
      });
    }
  }
  return verdicts;
}

/** Confidential computing and GPU needs from a handler's name (kata-deploy's names) and its configuration. */
export function needsOf(
  name: string,
  hypervisorTable: Record<string, unknown>,
): Pick<HandlerFacts, "confidential" | "gpu"> {
  const tokens = name.split("-");
  const confidential = tokens.includes("tdx")
    ? "tdx"
    : tokens.includes("snp") || hypervisorTable.sev_snp_guest === true
      ? "snp"
      : tokens.includes("sev")
        ? "sev"
        : null;
  return { confidential, gpu: name.includes("nvidia-gpu") || tokens.includes("gpu") };
}
