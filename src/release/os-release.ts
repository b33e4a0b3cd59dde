// The host's os-release and an extension's extension-release, as typed values. Fields keep systemd's
// distinction between absent (null) and present but empty (""), because SYSEXT_SCOPE= (empty) and no
// SYSEXT_SCOPE at all decide differently.
import { closeSync, constants, openSync, readSync } from "node:fs";
import { machine } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { KataError } from "../errors.ts";
import { resolveUnderRoot } from "../paths.ts";
import { type EnvFileProblem, parseEnvFile } from "./envfile.ts";

export interface HostRelease {
  /** ID; systemd-sysext refuses to merge anything when it is missing or empty. */
  id: string | null;
  /** ID_LIKE split on whitespace (empty when absent). */
  idLike: string[];
  versionId: string | null;
  sysextLevel: string | null;
  version: string | null;
  prettyName: string | null;
  values: Record<string, string>;
  problems: EnvFileProblem[];
}

export interface ExtensionRelease {
  id: string | null;
  versionId: string | null;
  sysextLevel: string | null;
  architecture: string | null;
  /** SYSEXT_SCOPE split on whitespace; null when the key is absent (systemd then assumes "system portable"). */
  scope: string[] | null;
  /** EXTENSION_RELOAD_MANAGER=1: systemd-sysext reloads the service manager after merging. */
  reloadManager: boolean;
  values: Record<string, string>;
  problems: EnvFileProblem[];
}

/** Where systemd looks for an extension's release file, relative to the extension's root. */
export function extensionReleasePath(name: string): string {
  return `usr/lib/extension-release.d/extension-release.${name}`;
}

/** The host os-release files systemd-sysext reads, in order; the first that exists wins. */
export const HOST_RELEASE_PATHS = ["/etc/os-release", "/usr/lib/os-release"] as const;

const field = (values: Record<string, string>, key: string): string | null =>
  Object.hasOwn(values, key) ? (values[key] ?? null) : null;
const words = (value: string | null): string[] => (value === null ? [] : value.split(/[ \t\n\r]+/).filter(Boolean));

export function parseHostRelease(text: string): HostRelease {
  const { values, problems } = parseEnvFile(text);
  return {
    id: field(values, "ID"),
    idLike: words(field(values, "ID_LIKE")),
    versionId: field(values, "VERSION_ID"),
    sysextLevel: field(values, "SYSEXT_LEVEL"),
    version: field(values, "VERSION"),
    prettyName: field(values, "PRETTY_NAME"),
    values,
    problems,
  };
}

/**
 * The host as it will be after an OS update to `versionId` (update_engine's new_version), for deciding before
 * the reboot. Assumes ID, ID_LIKE and SYSEXT_LEVEL stay as they are: the new os-release is not readable until
 * the new /usr is booted, and Flatcar has kept SYSEXT_LEVEL=1.0 across releases.
 */
export function hostAfterUpdate(current: HostRelease, versionId: string): HostRelease {
  const values: Record<string, string> = Object.assign(Object.create(null), current.values, {
    VERSION_ID: versionId,
    VERSION: versionId,
  });
  return { ...current, versionId, version: versionId, values, problems: [] };
}

export function parseExtensionRelease(text: string): ExtensionRelease {
  const { values, problems } = parseEnvFile(text);
  const scope = field(values, "SYSEXT_SCOPE");
  return {
    id: field(values, "ID"),
    versionId: field(values, "VERSION_ID"),
    sysextLevel: field(values, "SYSEXT_LEVEL"),
    architecture: field(values, "ARCHITECTURE"),
    scope: scope === null ? null : words(scope),
    reloadManager: field(values, "EXTENSION_RELOAD_MANAGER") === "1",
    values,
    problems,
  };
}

export async function readHostRelease(path: string): Promise<HostRelease> {
  return parseHostRelease(await readReleaseText(path, "os-release"));
}

export async function readExtensionRelease(path: string): Promise<ExtensionRelease> {
  return parseExtensionRelease(await readReleaseText(path, "extension-release"));
}

/**
 * Reads the host's os-release under `root` the way systemd-sysext --root does: /etc/os-release first, then
 * /usr/lib/os-release, symlinks followed inside the root (Flatcar's /etc/os-release -> ../usr/lib/os-release).
 */
export async function readHostReleaseUnder(root: string): Promise<HostRelease> {
  try {
    return await readHostReleaseAt(root, HOST_RELEASE_PATHS[0]);
  } catch (err) {
    const cause = err instanceof KataError ? err.cause : undefined;
    if ((cause as NodeJS.ErrnoException | undefined)?.code !== "ENOENT") throw err;
  }
  return readHostReleaseAt(root, HOST_RELEASE_PATHS[1]);
}

async function readHostReleaseAt(root: string, path: string): Promise<HostRelease> {
  let onDisk: string;
  try {
    onDisk = await resolveUnderRoot(root, path);
  } catch (err) {
    throw unreadable(join(root, path), "os-release", err);
  }
  return readHostRelease(onDisk);
}

/** Far above any real release file; an image or a pipe cannot make us read more. */
export const MAX_RELEASE_BYTES = 64 * 1024;

async function readReleaseText(path: string, kind: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readAtMost(path, MAX_RELEASE_BYTES + 1);
  } catch (err) {
    throw unreadable(path, kind, err);
  }
  return releaseText(bytes, path, kind);
}

function unreadable(path: string, kind: string, err: unknown): KataError {
  const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  return new KataError("release-unreadable", `${path}: cannot read ${kind} (${why})`, {
    remedy: `check that ${path} exists and is readable by root`,
    cause: err,
  });
}

/**
 * The one decoder for release-file bytes, wherever they come from (a file, an image): refuses what
 * systemd-sysext refuses. `path` names the file in messages.
 */
export function releaseText(bytes: Buffer, path: string, kind: string): string {
  if (bytes.length > MAX_RELEASE_BYTES) {
    throw new KataError("release-invalid", `${path}: ${kind} is larger than ${MAX_RELEASE_BYTES} bytes`, {
      remedy: `${path} should hold a few KEY=value lines`,
    });
  }
  if (bytes.length === 0) {
    throw new KataError("release-unreadable", `${path}: ${kind} file is empty`, {
      remedy: `write at least ID= into ${path}`,
    });
  }
  const nul = bytes.indexOf(0);
  if (nul >= 0) {
    // systemd reads env files as C strings and refuses one with a NUL anywhere ("Bad message").
    throw new KataError("release-invalid", `${path}: ${kind} holds a NUL byte at offset ${nul}`, {
      remedy: `remove the NUL byte from ${path}; systemd-sysext refuses the whole file`,
    });
  }
  try {
    // systemd refuses keys and values that are not UTF-8; we refuse the whole file, which is stricter only
    // when the invalid bytes sit in a comment. ignoreBOM: systemd keeps a byte-order mark as part of the first
    // key ("\uFEFFID" is not ID), so we must not strip it.
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (err) {
    throw new KataError("release-invalid", `${path}: ${kind} is not valid UTF-8`, {
      remedy: `rewrite ${path} as UTF-8 text`,
      cause: err,
    });
  }
}

/** How long a pipe (`<(…)`) may take to deliver the release file. */
const PIPE_WAIT_MS = 30_000;

/**
 * Reads up to `limit` bytes; works for regular files and for pipes (kata-sysextctl compat --os-release <(…)).
 * Opened non-blocking, so a FIFO nobody writes to cannot hang the open (its read ends at once, empty); a pipe
 * is read as it fills, for at most PIPE_WAIT_MS.
 */
async function readAtMost(path: string, limit: number): Promise<Buffer> {
  // Read synchronously: a release file is a few hundred bytes the kernel has cached, where a round trip through
  // the thread pool for each call cost more than the read. Only an empty pipe makes it wait, between tries.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const deadline = Date.now() + PIPE_WAIT_MS;
    const buffer = Buffer.alloc(limit);
    let length = 0;
    while (length < limit) {
      let bytesRead: number;
      try {
        bytesRead = readSync(fd, buffer, length, limit - length, null);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
        if (Date.now() > deadline) throw new Error(`nothing more came through it in ${PIPE_WAIT_MS / 1000} s`);
        await sleep(20);
        continue;
      }
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return buffer.subarray(0, length);
  } finally {
    closeSync(fd);
  }
}

// uname machine -> systemd architecture name (systemd's architecture.c): systemd-sysext compares ARCHITECTURE
// with uname_architecture(), i.e. the kernel's machine, not the userland's, so we read uname too.
const MACHINE_TO_ARCH: Record<string, string> = {
  x86_64: "x86-64",
  amd64: "x86-64",
  i386: "x86",
  i486: "x86",
  i586: "x86",
  i686: "x86",
  aarch64: "arm64",
  arm64: "arm64",
  aarch64_be: "arm64-be",
  ppc64le: "ppc64-le",
  ppc64: "ppc64",
  ppcle: "ppc-le",
  ppc: "ppc",
  s390x: "s390x",
  s390: "s390",
  riscv64: "riscv64",
  riscv32: "riscv32",
  loongarch64: "loongarch64",
  mips: "mips",
  mipsel: "mips-le",
  mips64: "mips64",
  mips64el: "mips64-le",
  sparc: "sparc",
  sparc64: "sparc64",
  alpha: "alpha",
  ia64: "ia64",
  parisc: "parisc",
  parisc64: "parisc64",
  m68k: "m68k",
  sh: "sh",
  sh64: "sh64",
};

// Fallback when uname is unknown: Node's own names.
const NODE_TO_ARCH: Record<string, string> = {
  x64: "x86-64",
  ia32: "x86",
  arm64: "arm64",
  arm: "arm",
  ppc64: "ppc64-le",
  s390x: "s390x",
  riscv64: "riscv64",
  loong64: "loongarch64",
  mips: "mips",
  mipsel: "mips-le",
};

/** The machine's architecture in systemd's naming (x86-64, arm64, …). */
export function hostArchitecture(unameMachine: string = machine(), nodeArch: string = process.arch): string {
  const fromUname = Object.hasOwn(MACHINE_TO_ARCH, unameMachine) ? MACHINE_TO_ARCH[unameMachine] : undefined;
  if (fromUname !== undefined) return fromUname;
  if (/^armv\d+.*b$/.test(unameMachine)) return "arm-be";
  if (/^arm/.test(unameMachine)) return "arm";
  return (Object.hasOwn(NODE_TO_ARCH, nodeArch) ? NODE_TO_ARCH[nodeArch] : undefined) ?? nodeArch;
}

/** Every architecture name systemd knows; file names are split on these. */
export const SYSTEMD_ARCHITECTURES: readonly string[] = [
  "alpha",
  "arc",
  "arc-be",
  "arm",
  "arm-be",
  "arm64",
  "arm64-be",
  "cris",
  "ia64",
  "loongarch64",
  "m68k",
  "mips",
  "mips-le",
  "mips64",
  "mips64-le",
  "nios2",
  "parisc",
  "parisc64",
  "ppc",
  "ppc-le",
  "ppc64",
  "ppc64-le",
  "riscv32",
  "riscv64",
  "s390",
  "s390x",
  "sh",
  "sh64",
  "sparc",
  "sparc64",
  "tilegx",
  "x86",
  "x86-64",
];
