// Finds a file the Kata configuration names (/opt/kata/bin/qemu-system-x86_64) inside the payload tree, falling
// back to the host root when the payload is an unmerged image tree and the file belongs to the host.
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
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

/** A regular executable file that runs: `--version` exits 0 within the timeout; its first line is the version. */
export async function inspectExecutable(ctx: PreflightContext, path: string): Promise<FileVerdict> {
  const readable = await inspectReadable(ctx, path);
  if (!readable.ok) return readable;
  const { onDisk } = readable;
  const st = await stat(onDisk);
  if ((st.mode & 0o111) === 0) return { ok: false, onDisk, problem: `${path} is not executable` };
  try {
    const { stdout, stderr, exitCode } = await run(onDisk, ["--version"], { timeoutMs: ctx.timeoutMs });
    const first = `${stdout}\n${stderr}`.split("\n").find((l) => l.trim() !== "") ?? "";
    if (exitCode !== 0) {
      return { ok: false, onDisk, problem: `${path} --version exited ${exitCode}: ${first.trim().slice(0, 160)}` };
    }
    return { ...readable, version: first.trim().slice(0, 160) || null };
  } catch (err) {
    return { ok: false, onDisk, problem: `${path} does not run: ${err instanceof Error ? err.message : String(err)}` };
  }
}
