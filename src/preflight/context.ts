// What every check reads, gathered once per run: host paths under --root, the payload (merged) tree, and lazily
// computed shared facts (cpuinfo, modules, the KVM probe, the Kata configuration) so two checks that need the
// same fact never read or run it twice.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { HostPaths } from "../paths.ts";
import { type CpuInfo, parseCpuinfo } from "./cpuinfo.ts";
import { helperPath } from "./helpers.ts";
import { type KataConfigs, loadKataConfigs } from "./kata-config.ts";
import { type KvmProbe, probeKvm } from "./kvm-probe.ts";
import { type Modules, readModules } from "./modules.ts";

export interface PreflightOptions {
  paths: HostPaths;
  /** The tree holding the extension's files; default: the merged host tree (paths.root). */
  payloadRoot?: string;
  /**
   * Where the daemon registers the Kata runtimes with containerd ([containerd] config_file and unit_drop_in);
   * null when that integration is off. Default: the configuration defaults.
   */
  containerd?: ContainerdFiles | null;
  /** Timeout for each helper and `--version` run. */
  timeoutMs?: number;
  /** Active companion extensions and the files they ship, where a hypervisor missing from Kata may be. */
  companions?: CompanionFiles[];
}

export interface CompanionFiles {
  name: string;
  /** Paths inside the image, without the leading slash. */
  files: string[];
}

export interface PreflightContext {
  paths: HostPaths;
  /** Resolve a host path (/proc, /sys, /dev, /etc) under --root. */
  host(path: string): string;
  /** Resolve a path of the extension's tree (/opt/kata/…) under the payload root. */
  payload(path: string): string;
  payloadRoot: string;
  /** True when --root points at a tree rather than the running system. */
  fixtureRoot: boolean;
  containerd: ContainerdFiles | null;
  timeoutMs: number;
  companions: CompanionFiles[];
  cpu(): Promise<CpuInfo | null>;
  modules(): Promise<Modules>;
  kvm(): Promise<KvmProbe>;
  kata(): Promise<KataConfigs>;
}

export interface ContainerdFiles {
  /** The containerd configuration with the Kata runtimes merged in. */
  configFile: string;
  /** The containerd.service drop-in that points CONTAINERD_CONFIG at it. */
  unitDropIn: string;
  /** [containerd] handlers: the operator's pinned handlers; null or absent: every one the host can run. */
  handlers?: string[] | null;
}

const DEFAULT_CONTAINERD: ContainerdFiles = {
  configFile: "/etc/kata-sysextd/containerd.toml",
  unitDropIn: "/etc/systemd/system/containerd.service.d/50-kata-sysextd.conf",
};

export function createContext(opts: PreflightOptions): PreflightContext {
  const { paths } = opts;
  const payloadRoot = opts.payloadRoot ?? paths.root;
  const payload = (p: string): string => (payloadRoot === "/" ? p : join(payloadRoot, p));
  const timeoutMs = opts.timeoutMs ?? 3000;
  const fixtureRoot = paths.root !== "/";
  return {
    paths,
    host: paths.host,
    payload,
    payloadRoot,
    fixtureRoot,
    containerd: opts.containerd === undefined ? DEFAULT_CONTAINERD : opts.containerd,
    timeoutMs,
    companions: opts.companions ?? [],
    cpu: once(async () => parseCpuinfo(await readFile(paths.host("/proc/cpuinfo"), "utf8").catch(() => ""))),
    modules: once(() => readModules(paths.host)),
    kvm: once(async () =>
      probeKvm({ device: paths.host("/dev/kvm"), fixtureRoot, helper: await helperPath("kvmProbe"), timeoutMs }),
    ),
    kata: once(() => loadKataConfigs(paths.host, payload)),
  };
}

function once<T>(compute: () => Promise<T>): () => Promise<T> {
  let value: Promise<T> | undefined;
  return () => {
    value ??= compute();
    return value;
  };
}
