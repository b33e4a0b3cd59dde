// Compiles the canary program (native/canary/canary.c) with `gcc -static` and packs it as an OCI layout tarball
// (oci.ts). Used by scripts/build-canary.ts at install and by the tests for their variants (another marker, a hang).
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { KataError } from "../errors.ts";
import { run } from "../exec.ts";
import { type CanaryLayout, canaryLayout } from "./oci.ts";

export const CANARY_SOURCE = join(import.meta.dirname, "..", "..", "native", "canary", "canary.c");

export interface CanaryVariant {
  /** Another first line instead of the marker (a canary whose output is wrong). */
  marker?: string;
  /** Never exits (a canary that hangs). */
  hang?: boolean;
}

/**
 * `gcc -static -O2 -s`: no debug info and no build paths in the binary, so equal sources and compilers give equal
 * bytes. `scratch` is a file path the binary is written to and removed from.
 */
export async function compileCanary(scratch: string, variant: CanaryVariant = {}, cc = "gcc"): Promise<Buffer> {
  const defines = [
    ...(variant.marker === undefined ? [] : [`-DCANARY_MARKER=${JSON.stringify(variant.marker)}`]),
    ...(variant.hang === true ? ["-DCANARY_HANG"] : []),
  ];
  const args = ["-static", "-O2", "-s", "-Wall", "-Wextra", "-Wl,--build-id=none", ...defines, "-o", scratch];
  try {
    const result = await run(cc, [...args, CANARY_SOURCE], { timeoutMs: 120_000 });
    if (result.exitCode !== 0) {
      throw new KataError("subprocess-failed", `${cc} could not build the canary: ${result.stderr.trim()}`, {
        remedy: "install gcc and the static C library (Debian: gcc, libc6-dev)",
      });
    }
    return await readFile(scratch);
  } finally {
    await rm(scratch, { force: true });
  }
}

export async function buildCanaryLayout(scratch: string, variant: CanaryVariant = {}): Promise<CanaryLayout> {
  return canaryLayout(await compileCanary(scratch, variant));
}
