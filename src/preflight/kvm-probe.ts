// The decisive KVM question — open /dev/kvm read-write, KVM_GET_API_VERSION, KVM_CREATE_VM — asked through the
// native kvm-probe helper (native/kvm-probe.c), since Node has no ioctl(2).
//
// Fixture trees: under a --root other than "/", <root>/dev/kvm is usually a regular file. Such a file may hold a
// recorded probe result (the helper's own JSON line, as printed on a real host); the check then reports that
// result and says it was recorded. On the real root a non-device /dev/kvm is always a failure.
import { readFile, stat } from "node:fs/promises";
import { run } from "../exec.ts";

export interface ProbeOutput {
  /** "ok" or the errno name of open(2). */
  open: string;
  chardev: boolean | null;
  /** The API version, or the errno name of the ioctl. */
  apiVersion: number | string | null;
  /** "ok" or the errno name of KVM_CREATE_VM. */
  createVm: string | null;
}

export type KvmProbe =
  | { kind: "absent"; device: string }
  | { kind: "not-chardev"; device: string }
  | { kind: "helper-missing"; device: string }
  | { kind: "helper-failed"; device: string; message: string }
  | { kind: "probed"; device: string; output: ProbeOutput; recorded: boolean };

export async function probeKvm(opts: {
  device: string;
  fixtureRoot: boolean;
  helper: string | null;
  timeoutMs: number;
}): Promise<KvmProbe> {
  const { device } = opts;
  let isChar: boolean;
  try {
    isChar = (await stat(device)).isCharacterDevice();
  } catch {
    return { kind: "absent", device };
  }
  if (!isChar) {
    if (!opts.fixtureRoot) return { kind: "not-chardev", device };
    const recorded = parseProbeOutput(await readFile(device, "utf8").catch(() => ""));
    return recorded === null
      ? { kind: "not-chardev", device }
      : { kind: "probed", device, output: recorded, recorded: true };
  }
  if (opts.helper === null) return { kind: "helper-missing", device };
  try {
    const { stdout, stderr, exitCode } = await run(opts.helper, [device], { timeoutMs: opts.timeoutMs });
    const output = parseProbeOutput(stdout);
    if (exitCode !== 0 || output === null) {
      return { kind: "helper-failed", device, message: `exit ${exitCode}: ${(stderr || stdout).trim()}` };
    }
    return { kind: "probed", device, output, recorded: false };
  } catch (err) {
    return { kind: "helper-failed", device, message: err instanceof Error ? err.message : String(err) };
  }
}

/** Parses the helper's one JSON line; null for anything else. */
export function parseProbeOutput(text: string): ProbeOutput | null {
  let value: unknown;
  try {
    value = JSON.parse(text.trim());
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const v = value as Record<string, unknown>;
  const str = (x: unknown): x is string => typeof x === "string";
  if (!str(v.open)) return null;
  if (!(v.chardev === null || typeof v.chardev === "boolean")) return null;
  if (!(v.apiVersion === null || str(v.apiVersion) || Number.isInteger(v.apiVersion))) return null;
  if (!(v.createVm === null || str(v.createVm))) return null;
  return { open: v.open, chardev: v.chardev, apiVersion: v.apiVersion as number | string | null, createVm: v.createVm };
}
