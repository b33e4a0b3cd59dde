// Builds the canary image (src/canary/: a static C program packed as an OCI image layout tarball) into
// build/canary.oci.tar. Runs as part of `npm ci` (postinstall) and of `npm run build:sysext`, which ships it.
// Reproducible: the same source and compiler give the same bytes; the digest is printed.
import { createHash } from "node:crypto";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { buildCanaryLayout } from "../src/canary/build.ts";

const out = resolve(process.argv[2] ?? join(import.meta.dirname, "..", "build", "canary.oci.tar"));
const scratch = `${out}.bin-${process.pid}`;
try {
  mkdirSync(resolve(out, ".."), { recursive: true });
  const layout = await buildCanaryLayout(scratch);
  // Beside and renamed: a daemon or test reading it never sees half a file.
  writeFileSync(`${out}.tmp-${process.pid}`, layout.tar);
  renameSync(`${out}.tmp-${process.pid}`, out);
  const digest = createHash("sha256").update(layout.tar).digest("hex");
  process.stdout.write(`build-canary: ${out} (${layout.ref}, sha256 ${digest.slice(0, 16)}…)\n`);
} catch (err) {
  process.stderr.write(`build-canary: ${(err as Error).message}\n`);
  // Without gcc the install still succeeds; the canary then fails with a message that says what is missing.
  if (process.env.KATA_SYSEXTD_REQUIRE_CANARY === "1") process.exit(1);
}
