// The Kata configuration that decides what the preflight must check: which hypervisors, their binaries, guest
// kernel and image, firmware, jailer, virtiofsd, memory. Read from exactly the files the runtime handlers
// registered with containerd run with (src/containerd/handlers.ts decides which, for both): the operator's
// /etc/kata-containers/configuration.toml for "kata" when it exists, the shipped configuration*.toml otherwise;
// each with the config.d/ drop-ins beside it merged in Kata's order (src/containerd/kata-file.ts).
import { readdir } from "node:fs/promises";
import { parse } from "smol-toml";
import { KATA_DEFAULTS_DIR, KATA_ETC_CONFIG, type RuntimeHandler, runtimeHandlers } from "../containerd/handlers.ts";
import { KataFileError, readKataFile } from "../containerd/kata-file.ts";

export const DEFAULTS_DIR = `/${KATA_DEFAULTS_DIR}`;

export interface HypervisorConfig {
  /** The [hypervisor.<name>] section: qemu, clh, firecracker, dragonball, stratovirt, … */
  name: string;
  /** The file it came from, as a path inside the tree (/opt/kata/share/…/configuration-qemu.toml). */
  configFile: string;
  path: string | null;
  kernel: string | null;
  image: string | null;
  initrd: string | null;
  /** Guest firmware (OVMF for confidential guests, …); null when the hypervisor's default is used. */
  firmware: string | null;
  /** Firecracker's jailer; null when it runs without one. */
  jailerPath: string | null;
  virtioFsDaemon: string | null;
  sharedFs: string | null;
  defaultMemoryMiB: number | null;
  disableVhostNet: boolean;
}

export interface KataConfigs {
  /** One entry per hypervisor name, from the most authoritative file that configures it. */
  hypervisors: HypervisorConfig[];
  /** The runtime handlers containerd gets, each with the file it runs with. */
  handlers: RuntimeHandler[];
  /** Every file read, as paths inside the tree. */
  files: string[];
  /** Files that exist but could not be read or parsed: "file:line: message". */
  errors: string[];
}

type Table = Record<string, unknown>;
const isTable = (v: unknown): v is Table => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: unknown): string | null => (typeof v === "string" && v !== "" ? v : null);
const num = (v: unknown): number | null => (typeof v === "number" || typeof v === "bigint" ? Number(v) : null);

/** Hypervisors whose VMs do not run on this host (peer pods): nothing here to check for them. */
const NOT_LOCAL = new Set(["remote"]);

/** Parses one configuration file's [hypervisor.*] sections. Throws TomlError on bad TOML. */
export function parseKataConfig(text: string, configFile: string): HypervisorConfig[] {
  return hypervisorsOf(parse(text) as Table, configFile);
}

/** The [hypervisor.*] sections of a parsed (and drop-in merged) configuration. */
export function hypervisorsOf(doc: Table, configFile: string): HypervisorConfig[] {
  const sections = isTable(doc.hypervisor) ? doc.hypervisor : {};
  return Object.entries(sections)
    .filter((entry): entry is [string, Table] => isTable(entry[1]) && !NOT_LOCAL.has(entry[0]))
    .map(([name, h]) => ({
      name,
      configFile,
      path: str(h.path),
      kernel: str(h.kernel),
      image: str(h.image),
      initrd: str(h.initrd),
      firmware: str(h.firmware),
      jailerPath: str(h.jailer_path),
      virtioFsDaemon: str(h.virtio_fs_daemon),
      sharedFs: str(h.shared_fs),
      defaultMemoryMiB: num(h.default_memory),
      disableVhostNet: h.disable_vhost_net === true,
    }));
}

/**
 * Reads the configurations. `etc` resolves host paths (the operator's /etc), `payload` paths inside the merged
 * tree. Precedence per hypervisor: the file the default handler "kata" runs with, then the file of the handler
 * named after the hypervisor (kata-qemu; kata-fc for firecracker), then variants (kata-qemu-tdx, …) in name order.
 */
export async function loadKataConfigs(
  etc: (p: string) => string,
  payload: (p: string) => string,
): Promise<KataConfigs> {
  let shipped: string[] = [];
  try {
    shipped = (await readdir(payload(DEFAULTS_DIR))).map((f) => `${KATA_DEFAULTS_DIR}/${f}`);
  } catch {
    // the extension is not merged (or ships no configuration)
  }
  const handlers = await runtimeHandlers(shipped, etc);
  const result: KataConfigs = { hypervisors: [], handlers, files: [], errors: [] };
  const best = new Map<string, { rank: number; config: HypervisorConfig }>();
  for (const inTree of new Set(handlers.map((h) => h.configPath))) {
    // The tree the file lives in: the host's /etc, or the merged payload.
    const treeRoot = inTree === KATA_ETC_CONFIG ? etc("/") : payload("/");
    let configs: HypervisorConfig[];
    try {
      const read = await readKataFile(treeRoot, inTree);
      result.files.push(...read.files.filter((f) => !result.files.includes(f)));
      configs = hypervisorsOf(read.doc, inTree);
    } catch (err) {
      if (err instanceof KataFileError) result.errors.push(err.message);
      else if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
        result.errors.push(`${inTree}: ${(err as Error).message}`);
      }
      continue;
    }
    for (const config of configs) {
      const rank = precedence(handlers, inTree, config.name);
      const current = best.get(config.name);
      if (current === undefined || rank < current.rank) best.set(config.name, { rank, config });
    }
  }
  result.hypervisors = [...best.values()].map((b) => b.config).sort((a, b) => a.name.localeCompare(b.name));
  return result;
}

const SHORT_NAMES: Record<string, string> = { firecracker: "fc" };

function precedence(handlers: readonly RuntimeHandler[], file: string, hypervisor: string): number {
  const using = new Set(handlers.filter((h) => h.configPath === file).map((h) => h.name));
  if (using.has("kata")) return 0;
  if (using.has(`kata-${hypervisor}`) || using.has(`kata-${SHORT_NAMES[hypervisor] ?? hypervisor}`)) return 1;
  return 2;
}

/** Whether this hypervisor shares the host filesystem through virtio-fs (and so needs virtiofsd). */
export const usesVirtioFs = (h: HypervisorConfig): boolean =>
  h.sharedFs === null ? h.virtioFsDaemon !== null && h.name !== "firecracker" : h.sharedFs.startsWith("virtio-fs");
