// Can these ELF executables run on that host? The question the loader answers at exec time, asked ahead of
// time: the object is for this host's machine, the interpreter exists, every DT_NEEDED library resolves
// (RPATH/RUNPATH with $ORIGIN, then the host's lib dirs, as ld.so searches), and every symbol version an object needs (GLIBC_2.34, …) is defined by the library
// that provides it. Used by the preflight on the Kata payload and by delivery on the bundled Node binary.
import { dirname, isAbsolute, join } from "node:path";
import { type ElfInfo, type ElfRead, readElf } from "./read.ts";
import { hostLibDirs, resolveInRoot } from "./root.ts";

export type AbiProblem =
  | { kind: "interpreter-missing"; interpreter: string }
  | { kind: "library-missing"; library: string; neededBy: string }
  | { kind: "version-missing"; library: string; version: string; neededBy: string; providedBy: string }
  | { kind: "unreadable"; message: string }
  /** Not for this host's loader at all: another machine, 32-bit, big-endian. */
  | { kind: "foreign"; message: string };

export interface AbiFinding {
  /** The file as given. */
  file: string;
  /** static: no interpreter, no dynamic section (passes); not-elf: scripts and data (passes). */
  linkage: "static" | "dynamic" | "not-elf" | "unreadable";
  ok: boolean;
  interpreter: string | null;
  problems: AbiProblem[];
  /** Highest GLIBC_x.y any object in the closure needs, e.g. "GLIBC_2.34"; null when none. */
  glibcNeeded: string | null;
  /** Highest GLIBC_x.y the resolved libc.so.6 defines; null when libc was not reached. */
  glibcProvided: string | null;
}

export interface AbiHost {
  /** The host root the binaries would run in ("/" here; a Flatcar tree in tests). */
  root: string;
  /** Host library directories (absolute inside root); default: /etc/ld.so.conf plus glibc's defaults. */
  libDirs?: string[];
  /** The host's ELF e_machine; default this machine's (62 on x86-64, 183 on arm64). */
  machine?: number;
}

export interface AbiImage {
  /** Where the image's absolute paths (RUNPATH /opt/kata/lib, …) live on disk; default: the host root. */
  root?: string;
}

/** ELF e_machine of the architectures Flatcar ships, by Node's process.arch. */
const MACHINES: Record<string, number> = { x64: 62, arm64: 183 };
const MACHINE_NAMES: Record<number, string> = { 3: "i386", 40: "arm", 62: "x86-64", 183: "aarch64", 243: "riscv" };

/** One finding per file, in the order given. Never throws for bad files: they become findings. */
export async function checkAbi(files: string[], host: AbiHost, image: AbiImage = {}): Promise<AbiFinding[]> {
  const machine = host.machine ?? MACHINES[process.arch] ?? 0;
  const loader = new Loader(host.root, host.libDirs ?? (await hostLibDirs(host.root)), image, machine);
  return Promise.all(files.map((file) => loader.check(file)));
}

/** Compares GLIBC_2.9 < GLIBC_2.34 numerically; other names sort first. */
export function compareGlibc(a: string, b: string): number {
  const pa = glibcParts(a);
  const pb = glibcParts(b);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? -1) - (pb[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}

const glibcParts = (name: string): number[] =>
  /^GLIBC_\d+(\.\d+)*$/.test(name) ? name.slice(6).split(".").map(Number) : [];
const isGlibcVersion = (name: string): boolean => glibcParts(name).length > 0;
const maxGlibc = (names: string[]): string | null =>
  names.filter(isGlibcVersion).reduce<string | null>((m, n) => (m === null || compareGlibc(n, m) > 0 ? n : m), null);

interface Loaded {
  path: string;
  info: ElfInfo;
  /** Found in the host's library dirs: its own needs are the host's business, not the image's. */
  host: boolean;
}

type ReadResult = ElfRead | { elf: false; reason: string; error: true };

/** Caches an async function by key: loader lookups repeat across binaries (every one needs libc). */
function memoize<T>(compute: (key: string) => Promise<T>): (key: string) => Promise<T> {
  const cache = new Map<string, Promise<T>>();
  return (key) => {
    let pending = cache.get(key);
    if (pending === undefined) {
      pending = compute(key);
      cache.set(key, pending);
    }
    return pending;
  };
}

class Loader {
  private readonly root: string;
  private readonly hostDirs: string[];
  private readonly imageRoot: string;
  private readonly machine: number;
  private readonly resolved = memoize((key) => {
    const [root = "/", path = ""] = key.split("\0");
    return resolveInRoot(root, path);
  });
  private readonly read = memoize(
    (path): Promise<ReadResult> =>
      readElf(path).catch((err: unknown) => ({
        elf: false as const,
        reason: err instanceof Error ? err.message : String(err),
        error: true as const,
      })),
  );

  constructor(root: string, hostDirs: string[], image: AbiImage, machine: number) {
    this.root = root;
    this.hostDirs = hostDirs;
    this.imageRoot = image.root ?? root;
    this.machine = machine;
  }

  private resolve(root: string, path: string): Promise<string | null> {
    return this.resolved(`${root}\0${path}`);
  }

  async check(file: string): Promise<AbiFinding> {
    const finding: AbiFinding = {
      file,
      linkage: "dynamic",
      ok: true,
      interpreter: null,
      problems: [],
      glibcNeeded: null,
      glibcProvided: null,
    };
    const read = await this.read(file);
    if (!read.elf && "foreign" in read) {
      finding.ok = false;
      finding.problems.push({ kind: "foreign", message: `${read.reason}, which this host's loader cannot run` });
      return finding;
    }
    if (!read.elf) {
      const unreadable = "error" in read;
      finding.linkage = unreadable ? "unreadable" : "not-elf";
      if (unreadable) {
        finding.ok = false;
        finding.problems.push({ kind: "unreadable", message: read.reason });
      }
      return finding;
    }
    const exe = read.info;
    finding.interpreter = exe.interpreter;
    if (this.machine !== 0 && exe.machine !== this.machine) {
      const name = (m: number) => MACHINE_NAMES[m] ?? `machine ${m}`;
      finding.ok = false;
      finding.problems.push({
        kind: "foreign",
        message: `built for ${name(exe.machine)}, this host is ${name(this.machine)}`,
      });
      return finding;
    }
    if (exe.interpreter === null && !exe.dynamic) {
      finding.linkage = "static";
      return finding;
    }
    if (exe.interpreter !== null && (await this.resolve(this.root, exe.interpreter)) === null) {
      finding.problems.push({ kind: "interpreter-missing", interpreter: exe.interpreter });
    }

    // Breadth-first over the dependency closure, as the loader does; each object's own search path applies
    // to its own DT_NEEDED entries. Versions are checked against the object each soname resolved to.
    const exeRpath = exe.runpath.length === 0 ? exe.rpath : [];
    const queue: Loaded[] = [{ path: file, info: exe, host: false }];
    const seen = new Set<string>([file]);
    const versionsNeeded: string[] = [];
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
      const resolved = new Map<string, Loaded>();
      for (const needed of next.info.needed) {
        const lib = await this.resolveLibrary(needed, next, exe.machine, exeRpath);
        if (lib === null) {
          finding.problems.push({ kind: "library-missing", library: needed, neededBy: next.path });
          continue;
        }
        resolved.set(needed, lib);
        if (needed.startsWith("libc.so.")) finding.glibcProvided = maxGlibc(lib.info.versionDefs);
        if (!seen.has(lib.path)) {
          seen.add(lib.path);
          queue.push(lib);
        }
      }
      for (const need of next.info.versionNeeds) {
        if (need.file.startsWith("libc.so.") && !next.host) versionsNeeded.push(...need.versions);
        const provider = resolved.get(need.file);
        if (provider === undefined) continue; // reported as library-missing (or not a DT_NEEDED: nothing to check)
        const defined = new Set(provider.info.versionDefs);
        for (const version of need.versions) {
          if (!defined.has(version)) {
            finding.problems.push({
              kind: "version-missing",
              library: need.file,
              version,
              neededBy: next.path,
              providedBy: provider.path,
            });
          }
        }
      }
    }
    finding.glibcNeeded = maxGlibc(versionsNeeded);
    finding.ok = finding.problems.length === 0;
    return finding;
  }

  private async resolveLibrary(name: string, by: Loaded, machine: number, exeRpath: string[]): Promise<Loaded | null> {
    // Where to look, in the loader's order; `root` null means the path is already on disk ($ORIGIN).
    const lookups: Array<{ root: string | null; path: string; host?: true }> = [];
    const inRoots = (path: string): void => {
      if (this.imageRoot !== this.root) lookups.push({ root: this.imageRoot, path });
      lookups.push({ root: this.root, path });
    };
    if (name.includes("/")) {
      if (isAbsolute(name)) inRoots(name);
    } else {
      const origin = dirname(by.path);
      // DT_RPATH applies only without DT_RUNPATH, and the executable's RPATH is inherited by its libraries.
      const rpath = by.info.runpath.length === 0 ? [...by.info.rpath, ...exeRpath] : [];
      for (const dir of [...rpath, ...by.info.runpath]) {
        if (/\$(ORIGIN\b|\{ORIGIN\})/.test(dir)) {
          lookups.push({ root: null, path: join(dir.replace(/\$(ORIGIN\b|\{ORIGIN\})/g, origin), name) });
        } else if (isAbsolute(dir)) {
          inRoots(join(dir, name));
        }
      }
      for (const dir of this.hostDirs) lookups.push({ root: this.root, path: join(dir, name), host: true });
    }
    for (const lookup of lookups) {
      const onDisk = lookup.root === null ? lookup.path : await this.resolve(lookup.root, lookup.path);
      if (onDisk === null) continue;
      // Like ld.so, skip candidates of the wrong class or machine (a 32-bit libc in /usr/lib, say).
      const read = await this.read(onDisk);
      if (read.elf && read.info.machine === machine)
        return { path: onDisk, info: read.info, host: lookup.host === true };
    }
    return null;
  }
}
