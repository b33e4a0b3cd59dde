// The facts handler selection (selection.ts) decides on, read under --root like every host path: each handler's
// Kata configuration (config.d drop-ins merged) and hypervisor binary (present, and runnable by the host's
// loader), and the host's devices, CPU and KVM module parameters.
import { readdir, readFile, stat } from "node:fs/promises";
import { relative } from "node:path";
import { checkAbi } from "../elf/abi.ts";
import { resolveInRoot } from "../elf/root.ts";
import { describeProblems } from "../preflight/checks/abi.ts";
import { parseCpuinfo } from "../preflight/cpuinfo.ts";
import { KATA_ETC_CONFIG, type RuntimeHandler } from "./handlers.ts";
import { KataFileError, readKataFile } from "./kata-file.ts";
import { isTable, type Table } from "./schema.ts";
import { type HandlerFacts, type HostFacts, needsOf } from "./selection.ts";

export interface Trees {
  /** The host root (--root): /etc, /dev, /sys, /proc, and the host's libraries. */
  hostRoot: string;
  /** Where the extension's files are (the merged host tree on a real host). */
  payloadRoot: string;
}

/** The first [hypervisor.<name>] table of a Kata configuration, as [name, table]. */
export function hypervisorOf(doc: Table): [string, Table] | null {
  const sections = isTable(doc.hypervisor) ? doc.hypervisor : {};
  const first = Object.entries(sections).find((e): e is [string, Table] => isTable(e[1]));
  return first ?? null;
}

export async function handlerFacts(handlers: readonly RuntimeHandler[], trees: Trees): Promise<HandlerFacts[]> {
  const out: HandlerFacts[] = [];
  for (const h of handlers) {
    const base = {
      name: h.name,
      configPath: h.configPath,
      hypervisor: null,
      binary: null,
      confidential: null,
      gpu: false,
    };
    const tree = h.configPath === KATA_ETC_CONFIG ? trees.hostRoot : trees.payloadRoot;
    let doc: Table;
    try {
      doc = (await readKataFile(tree, h.configPath)).doc;
    } catch (err) {
      const why =
        err instanceof KataFileError ? err.message : `${h.configPath}: ${(err as NodeJS.ErrnoException).code}`;
      out.push({ ...base, configProblem: `its Kata configuration cannot be read: ${why}` });
      continue;
    }
    const found = hypervisorOf(doc);
    if (found === null) {
      out.push({ ...base, configProblem: `${h.configPath} has no [hypervisor.*] section` });
      continue;
    }
    const [hypervisor, table] = found;
    const path = typeof table.path === "string" && table.path !== "" ? table.path : null;
    out.push({
      ...base,
      hypervisor,
      configProblem: null,
      binary: path === null || hypervisor === "remote" ? null : { path, problem: await binaryProblem(path, trees) },
      ...needsOf(h.name, table),
    });
  }
  return out;
}

/** Why the hypervisor binary cannot run here: missing, or the host's loader cannot satisfy it. */
async function binaryProblem(path: string, trees: Trees): Promise<string | null> {
  const onDisk = await resolveInRoot(trees.payloadRoot, path);
  if (onDisk === null) return "missing";
  const [finding] = await checkAbi([onDisk], { root: trees.hostRoot }, { root: trees.payloadRoot });
  if (finding === undefined || finding.ok) return null;
  return describeProblems(finding, (file) => `/${relative(trees.payloadRoot, file)}`.replace(/^\/+/, "/"));
}

const readTrimmed = (file: string) =>
  readFile(file, "utf8").then(
    (t) => t.trim(),
    () => null,
  );

export async function hostFacts(host: (path: string) => string, devmapper: boolean): Promise<HostFacts> {
  const cpu = parseCpuinfo(await readFile(host("/proc/cpuinfo"), "utf8").catch(() => ""));
  const dev = async (dir: string) => readdir(host(dir)).catch(() => [] as string[]);
  // As the preflight's devices check: a character device, or under a fixture root a plain file standing for one.
  const fixture = host("/") !== "/";
  const device = (path: string) =>
    stat(host(path)).then(
      (st) => st.isCharacterDevice() || (fixture && st.isFile()),
      () => false,
    );
  return {
    cpuVendor: cpu?.vendor ?? null,
    cpuFlags: [...(cpu?.flags ?? [])],
    kvm: await device("/dev/kvm"),
    vhostVsock: await device("/dev/vhost-vsock"),
    devmapper,
    params: {
      tdx: await readTrimmed(host("/sys/module/kvm_intel/parameters/tdx")),
      sevSnp: await readTrimmed(host("/sys/module/kvm_amd/parameters/sev_snp")),
      sev: await readTrimmed(host("/sys/module/kvm_amd/parameters/sev")),
    },
    devSev: await device("/dev/sev"),
    vfioGroups: (await dev("/dev/vfio")).filter((n) => /^[0-9]+$/.test(n)).length,
    nvidia: (await dev("/dev")).some((n) => /^nvidia[0-9]+$/.test(n)),
  };
}
