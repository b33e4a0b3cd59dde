// Will the ELF files the daemon's sysext ships run on the oldest Flatcar we support? No Flatcar root is at hand
// at build time, so that release's glibc is encoded here (from its public package list) and every GLIBC_x.y
// version any shipped ELF needs must not exceed it; the libraries they need must be ones Flatcar ships.
// The project's own ELF reader and loader model (src/elf) answer the questions.
import { type AbiFinding, checkAbi, compareGlibc } from "../elf/abi.ts";
import { readElf } from "../elf/read.ts";

export interface GlibcFloor {
  /** The oldest Flatcar release the README claims to support. */
  flatcar: string;
  /** The highest symbol version that release's glibc defines. */
  glibc: string;
  /** Where the number comes from. */
  source: string;
}

/**
 * Flatcar LTS 2024 (4081.3.x), the oldest maintained channel. glibc 2.38 reached Flatcar's main branch in
 * February 2024 (flatcar/scripts#1567, 2.37-r7 -> 2.38-r10) and was cherry-picked to the 3941 beta in May 2024
 * (flatcar/scripts#1990, 2.38-r13), so every 4081 release (branched later in 2024) ships sys-libs/glibc 2.38.
 */
export const OLDEST_FLATCAR: GlibcFloor = {
  flatcar: "4081.3.0",
  glibc: "GLIBC_2.38",
  source: "sys-libs/glibc 2.38-r13 (flatcar/scripts#1567, #1990)",
};

/** Sonames Flatcar's /usr/lib64 provides (glibc, and gcc's runtime, extracted there since flatcar/scripts#391). */
export const FLATCAR_LIBRARIES: readonly string[] = [
  "libc.so.6",
  "libm.so.6",
  "libdl.so.2",
  "libpthread.so.0",
  "librt.so.1",
  "ld-linux-x86-64.so.2",
  "libstdc++.so.6",
  "libgcc_s.so.1",
  "libsystemd.so.0",
];

/** glibc's x86-64 loader; Flatcar has /lib64 -> usr/lib64. */
const INTERPRETER = "/lib64/ld-linux-x86-64.so.2";

export interface FloorFinding {
  /** The file as given (a path in the staging tree). */
  file: string;
  /** Highest GLIBC_x.y the file needs from any glibc library (libc, libm, libpthread, …); null when none. */
  glibcNeeded: string | null;
  /** Its DT_NEEDED libraries. */
  libraries: string[];
  /** Why it would not run on the floor release; empty when it would. */
  problems: string[];
}

/** Only ELF files are reported; scripts and data have no glibc needs. */
export async function checkGlibcFloor(files: string[], floor: GlibcFloor = OLDEST_FLATCAR): Promise<FloorFinding[]> {
  const elves: Array<{ file: string; needed: string[]; versions: string[]; interpreter: string | null }> = [];
  for (const file of files) {
    const read = await readElf(file);
    if (!read.elf) continue;
    const versions = read.info.versionNeeds.flatMap((need) => need.versions).filter((v) => v.startsWith("GLIBC_"));
    elves.push({ file, needed: read.info.needed, versions, interpreter: read.info.interpreter });
  }
  // The loader model resolves each closure on the build host: a need that this glibc cannot meet either is a
  // broken binary, not a Flatcar question.
  const abi = await checkAbi(
    elves.map((e) => e.file),
    { root: "/" },
  );
  return elves.map((elf, i): FloorFinding => {
    const needed = maxVersion([...elf.versions, ...(abi[i]?.glibcNeeded ? [abi[i].glibcNeeded] : [])]);
    const problems: string[] = [];
    if (needed !== null && compareGlibc(needed, floor.glibc) > 0) {
      problems.push(`needs ${needed}, Flatcar ${floor.flatcar} has ${floor.glibc}`);
    }
    for (const lib of elf.needed) {
      if (!FLATCAR_LIBRARIES.includes(lib)) problems.push(`needs ${lib}, which Flatcar does not ship`);
    }
    if (elf.interpreter !== null && elf.interpreter !== INTERPRETER) {
      problems.push(`interpreter ${elf.interpreter}, Flatcar's is ${INTERPRETER}`);
    }
    problems.push(...buildHostProblems(abi[i]));
    return { file: elf.file, glibcNeeded: needed, libraries: elf.needed, problems };
  });
}

function buildHostProblems(finding: AbiFinding | undefined): string[] {
  return (finding?.problems ?? []).map((p): string => {
    if (p.kind === "interpreter-missing") return `interpreter ${p.interpreter} missing on the build host`;
    if (p.kind === "library-missing") return `${p.library} (needed by ${p.neededBy}) missing on the build host`;
    if (p.kind === "version-missing")
      return `${p.version} from ${p.library} not defined by ${p.providedBy} on the build host`;
    if (p.kind === "foreign") return p.message;
    return `unreadable: ${p.message}`;
  });
}

function maxVersion(versions: string[]): string | null {
  return versions.reduce<string | null>((m, v) => (m === null || compareGlibc(v, m) > 0 ? v : m), null);
}
