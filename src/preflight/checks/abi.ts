// Can every dynamically linked executable of the extension run on this host's glibc? This is the glibc-skew
// failure Kata on Flatcar fears most: a binary built against a newer glibc than the booted Flatcar ships.
import { lstat, readdir } from "node:fs/promises";
import { join, relative } from "node:path";
import { type AbiFinding, type AbiProblem, checkAbi, compareGlibc } from "../../elf/abi.ts";
import type { PreflightCheck } from "../../status.ts";
import { type Check, result } from "../check.ts";
import { locate } from "../locate.ts";

const ID = "abi";
const KATA_DIR = "/opt/kata";
/** Library directories the extension itself may ship. */
/** A hostile or huge tree must not stall the preflight. */
const MAX_FILES = 2000;
export const SHIM = "/opt/kata/bin/containerd-shim-kata-v2";

export const abi: Check = {
  id: ID,
  group: "abi",
  async run(ctx) {
    const { hypervisors } = await ctx.kata();
    // Who needs which file: a broken qemu fails the qemu verdict only; the shim fails every hypervisor.
    const owners = new Map<string, Set<string>>();
    const own = async (path: string | null, hypervisor: string): Promise<void> => {
      const onDisk = path === null ? null : await locate(ctx, path);
      if (onDisk === null) return; // missing files are the payload check's business
      owners.set(onDisk, (owners.get(onDisk) ?? new Set()).add(hypervisor));
    };
    for (const h of hypervisors) {
      await own(h.path, h.name);
      await own(h.virtioFsDaemon, h.name);
    }
    const shim = await locate(ctx, SHIM);
    const files = new Set(await executablesUnder(ctx.payload(KATA_DIR)));
    for (const f of owners.keys()) files.add(f);
    if (files.size === 0) return [result(ID, "skip", `no executables under ${KATA_DIR}`)];

    const findings = await checkAbi(
      [...files],
      { root: ctx.paths.root },
      // No image lib dirs: ld.so finds /opt/kata/lib only through an object's RUNPATH/RPATH (a sysext cannot add
      // to /etc/ld.so.conf), so that is all the check may use too.
      { root: ctx.payloadRoot },
    );
    const shown = (file: string): string => `/${relative(ctx.payloadRoot, file)}`.replace(/^\/+/, "/");
    const out: PreflightCheck[] = [];
    let hostWide = false;
    for (const f of findings.filter((x) => !x.ok)) {
      const detail = `${shown(f.file)}: ${describeProblems(f, shown)}`;
      const remedy = remedyFor(f);
      const hvs = owners.get(f.file);
      if (hvs !== undefined) {
        for (const hypervisor of hvs) out.push(result(ID, "fail", detail, { remedy, hypervisor }));
      } else {
        // The shim is needed by every hypervisor; other tools (kata-monitor, kata-collect-data) are optional.
        hostWide ||= f.file === shim;
        out.push(result(ID, f.file === shim ? "fail" : "warn", detail, { remedy }));
      }
    }
    out.unshift(summary(findings, hostWide));
    return out;
  },
};

/**
 * The overview line. It fails only for host-wide failures (the shim); a broken hypervisor binary fails that
 * hypervisor's own line below, so Firecracker stays ready when only QEMU cannot run.
 */
function summary(findings: AbiFinding[], hostWideFailure: boolean): PreflightCheck {
  const elf = findings.filter((f) => f.linkage === "dynamic" || f.linkage === "static");
  const statics = elf.filter((f) => f.linkage === "static").length;
  const bad = findings.filter((f) => !f.ok).length;
  const needed = findings.map((f) => f.glibcNeeded).filter((g): g is string => g !== null);
  const provided = findings.map((f) => f.glibcProvided).find((g) => g !== null) ?? null;
  const highest = needed.sort(compareGlibc).at(-1);
  const glibc = highest ? `; highest need ${highest}, host libc provides up to ${provided ?? "?"}` : "";
  const counts = `${elf.length} ELF executables (${elf.length - statics} dynamic, ${statics} static)${glibc}`;
  if (bad === 0) return result(ID, "pass", `${counts}: all can run on this host`);
  return result(ID, hostWideFailure ? "fail" : "pass", `${counts}: ${bad} cannot run on this host (listed below)`, {
    remedy: "use a kata-containers extension built for this Flatcar release (older glibc), or update Flatcar",
  });
}

export function describeProblems(f: AbiFinding, shown: (file: string) => string): string {
  const one = (p: AbiProblem): string => {
    switch (p.kind) {
      case "interpreter-missing":
        return `interpreter ${p.interpreter} missing`;
      case "library-missing":
        return `needs ${p.library}, not found${p.neededBy === f.file ? "" : ` (needed by ${shown(p.neededBy)})`}`;
      case "version-missing":
        return `needs ${p.version} from ${p.library}, which the host's ${shown(p.providedBy)} does not define`;
      case "unreadable":
        return `unreadable: ${p.message}`;
      case "foreign":
        return p.message;
    }
  };
  const parts = [...new Set(f.problems.map(one))];
  return parts.length > 4 ? `${parts.slice(0, 4).join("; ")}; and ${parts.length - 4} more` : parts.join("; ");
}

function remedyFor(f: AbiFinding): string {
  if (f.problems.some((p) => p.kind === "version-missing")) {
    return `the host's glibc is older than the binary needs (${f.glibcNeeded ?? "?"} > ${f.glibcProvided ?? "?"}): use an extension built for this Flatcar release, or update Flatcar`;
  }
  if (f.problems.some((p) => p.kind === "library-missing" || p.kind === "interpreter-missing")) {
    return "the extension must ship the missing libraries (under /opt/kata/lib with RUNPATH $ORIGIN/../lib) or link them statically";
  }
  return "reinstall the kata-containers extension";
}

/** Regular files with an execute bit under dir (symlinks are not followed: their targets are in the tree). */
async function executablesUnder(dir: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(dir, { recursive: true });
  } catch {
    return [];
  }
  const files: string[] = [];
  for (const entry of entries) {
    if (files.length >= MAX_FILES) break;
    const full = join(dir, entry);
    const st = await lstat(full).catch(() => null);
    if (st?.isFile() && (st.mode & 0o111) !== 0) files.push(full);
  }
  return files;
}
