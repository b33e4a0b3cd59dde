// Builds the project's small native helpers (native/*.c -> build/<name>) with the system C compiler.
// The preflight needs them because Node has no ioctl(2) (kvm-probe) and no xattr API (xattr-get).
// Runs as part of `npm ci` (postinstall). Without a C compiler the install still succeeds: the preflight then
// reports the KVM and SELinux label checks as "warn: helper not built" instead of guessing.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const sources = join(root, "native");
const out = join(root, "build");
const cc = process.env.CC || "cc";

mkdirSync(out, { recursive: true });
let failed = false;
for (const file of readdirSync(sources).filter((f) => f.endsWith(".c"))) {
  const src = join(sources, file);
  const bin = join(out, basename(file, ".c"));
  if (existsSync(bin) && statSync(bin).mtimeMs >= statSync(src).mtimeMs) continue;
  try {
    // Build beside and rename: a helper being run (or built by a parallel test worker) is never half written.
    const tmp = `${bin}.tmp-${process.pid}`;
    execFileSync(cc, ["-O2", "-Wall", "-Wextra", "-o", tmp, src], {
      stdio: ["ignore", "inherit", "inherit"],
    });
    renameSync(tmp, bin);
  } catch (err) {
    failed = true;
    const why = err.code === "ENOENT" ? `${cc} not found` : err.message;
    console.error(
      `build-helpers: cannot build ${bin}: ${why}; preflight will report the checks that need it as warnings`,
    );
  }
}
if (failed && process.env.KATA_SYSEXTD_REQUIRE_HELPERS === "1") process.exit(1);
