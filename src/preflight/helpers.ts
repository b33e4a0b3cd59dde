// The native helpers built by scripts/build-helpers.mjs into build/, found relative to this checkout; an
// environment variable points elsewhere (a packaged install, a test). Null when the helper was not built.
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const buildDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "build");

export const HELPERS = {
  kvmProbe: { file: "kvm-probe", env: "KATA_SYSEXTD_KVM_PROBE" },
  xattrGet: { file: "xattr-get", env: "KATA_SYSEXTD_XATTR_GET" },
} as const;

export async function helperPath(which: keyof typeof HELPERS): Promise<string | null> {
  const { file, env } = HELPERS[which];
  const path = process.env[env] || join(buildDir, file);
  try {
    await access(path, constants.X_OK);
    return path;
  } catch {
    return null;
  }
}
