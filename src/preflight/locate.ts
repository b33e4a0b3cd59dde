// Finds a file the Kata configuration names (/opt/kata/bin/qemu-system-x86_64) inside the payload tree, falling
// back to the host root when the payload is an unmerged image tree and the file belongs to the host.
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { isAbsolute, join, relative } from "node:path";
import { readElf } from "../elf/read.ts";
import { resolveInRoot } from "../elf/root.ts";
import { run } from "../exec.ts";
import type { PreflightContext } from "./context.ts";

export async function locate(ctx: PreflightContext, path: string): Promise<string | null> {
  const inPayload = await resolveInRoot(ctx.payloadRoot, path);
  if (inPayload !== null || ctx.payloadRoot === ctx.paths.root) return inPayload;
  return resolveInRoot(ctx.paths.root, path);
}

export type FileVerdict =
  | { ok: true; onDisk: string; size: number; version: string | null }
  | { ok: false; onDisk: string | null; problem: string };

/** A regular, readable file. */
export async function inspectReadable(ctx: PreflightContext, path: string): Promise<FileVerdict> {
  const onDisk = await locate(ctx, path);
  if (onDisk === null) return { ok: false, onDisk, problem: `${path} does not exist` };
  const st = await stat(onDisk);
  if (!st.isFile()) return { ok: false, onDisk, problem: `${path} is not a regular file` };
  try {
    await access(onDisk, constants.R_OK);
  } catch {
    return { ok: false, onDisk, problem: `${path} is not readable` };
  }
  return { ok: true, onDisk, size: st.size, version: null };
}

/**
 * A regular executable file that runs: `--version` exits 0 within the timeout; its first line is the version.
 * Under --root it runs inside that root, with the root's own loader and libraries: run directly, it would find
 * this machine's, and pass or fail by what happens to be installed here. It runs chrooted in a mount namespace of
 * its own with a fresh /proc there (the loader resolves $ORIGIN through /proc/self/exe); the root's own /proc is
 * left as it is. Where it cannot be run so (not root, or the file lies outside the root) it is judged by its ELF.
 */
export async function inspectExecutable(ctx: PreflightContext, path: string): Promise<FileVerdict> {
  const readable = await inspectReadable(ctx, path);
  if (!readable.ok) return readable;
  const { onDisk } = readable;
  const st = await stat(onDisk);
  if ((st.mode & 0o111) === 0) return { ok: false, onDisk, problem: `${path} is not executable` };
  const root = ctx.paths.root;
  let argv: [string, string[]] = [onDisk, ["--version"]];
  if (root !== "/") {
    const inRoot = relative(root, onDisk);
    if (inRoot.startsWith("..") || isAbsolute(inRoot) || process.getuid?.() !== 0) {
      return judgeElf(path, readable);
    }
    const proc = (await stat(join(root, "proc")).catch(() => null))?.isDirectory() === true;
    const namespace = ["--mount", "--propagation", "private", "--kill-child", ...(proc ? ["--mount-proc=/proc"] : [])];
    argv = ["unshare", [...namespace, `--root=${root}`, `/${inRoot}`, "--version"]];
  }
  try {
    const { stdout, stderr, exitCode } = await run(argv[0], argv[1], { timeoutMs: ctx.timeoutMs });
    // unshare's own failure (no mount namespaces here): not the binary's verdict.
    if (argv[0] === "unshare" && exitCode !== 0 && stderr.startsWith("unshare: ")) return judgeElf(path, readable);
    const first = `${stdout}\n${stderr}`.split("\n").find((l) => l.trim() !== "") ?? "";
    if (exitCode !== 0) {
      return { ok: false, onDisk, problem: `${path} --version exited ${exitCode}: ${first.trim().slice(0, 160)}` };
    }
    return { ...readable, version: first.trim().slice(0, 160) || null };
  } catch (err) {
    return { ok: false, onDisk, problem: `${path} does not run: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/** e_machine of this machine's architecture, as the loader in a root would need it. */
const MACHINE: Partial<Record<string, number>> = { x64: 62, arm64: 183 };

/** An executable judged without running it: an ELF for this architecture whose loader is in the root. */
async function judgeElf(path: string, readable: FileVerdict & { ok: true }): Promise<FileVerdict> {
  const { onDisk } = readable;
  const read = await readElf(onDisk);
  if (!read.elf) return { ok: false, onDisk, problem: `${path} is not an executable for this machine: ${read.reason}` };
  const machine = MACHINE[process.arch];
  if (machine !== undefined && read.info.machine !== machine) {
    return {
      ok: false,
      onDisk,
      problem: `${path} is built for another architecture (ELF machine ${read.info.machine})`,
    };
  }
  return { ...readable, version: "not run (judged by its ELF: not root, or outside --root)" };
}
