// The one-shot commands' script form (scripts/bundle.ts says why it exists): how a launcher compiles and runs it,
// with the V8 code cache its last run left. bin/entry.js runs build/bundle/'s; the sysext image's launcher, built
// by scripts/build-sysext.ts, runs the one beside it.
const { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } = process.getBuiltinModule("node:fs");
const { createRequire, getCompileCacheDir } = process.getBuiltinModule("node:module");
const { fileURLToPath } = process.getBuiltinModule("node:url");

/**
 * Whether `kata-sysextd` argv is `boot` or `--once` with only --config and --root beside it, which src/cli/daemon.ts
 * runs as a one-shot command (or refuses): never the daemon, which the script form leaves out. Anything else
 * (--help, an option this does not know) runs the split bundle, which has every command: a miss costs time only.
 */
export function oneShot(argv) {
  let verb = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "boot" || arg === "--once") verb = true;
    else if (arg === "--config" || arg === "--root") i++;
    else if (!arg.startsWith("--config=") && !arg.startsWith("--root=")) return false;
  }
  return verb;
}

/**
 * The script form at `url` (a file: URL), run: `exports` has its `main`; null when it is not there. V8 compiles it
 * with the code cache the last run left in Node's compile cache folder; keepCache(), once the command is done,
 * writes that cache when there was none or V8 refused it: made after the run, it holds every function the command
 * compiled, which Node's own compile cache (made before a module runs) does not.
 */
export function runScriptForm(url, name) {
  const file = fileURLToPath(url);
  let source;
  try {
    source = readFileSync(file, "latin1"); // ASCII only (scripts/bundle.ts): no decoding to do
  } catch {
    return null;
  }
  // The SHA-256 of the script keys its cache: V8 checks a cache only against the length of the source.
  const sha256 = /^\/\/([0-9a-f]{64})\n/.exec(source)?.[1];
  if (sha256 === undefined) return null;
  const cacheDir = getCompileCacheDir?.();
  const cacheFile = cacheDir === undefined ? null : `${cacheDir}/${name}-${sha256}.v8cache`;
  let cachedData;
  try {
    if (cacheFile !== null) cachedData = readFileSync(cacheFile);
  } catch {
    // none yet: this run makes it
  }
  const vm = process.getBuiltinModule("node:vm");
  // The file is a function, a CommonJS module's wrapper with import.meta's url and dirname as two more parameters.
  const compiled = new vm.Script(source, { filename: file, cachedData });
  const module = { exports: {} };
  const dir = fileURLToPath(new URL(".", url)).replace(/\/$/, "");
  compiled.runInThisContext()(module.exports, createRequire(url), module, url.href, dir);
  return {
    exports: module.exports,
    keepCache() {
      if (cacheFile === null || (cachedData !== undefined && !compiled.cachedDataRejected)) return;
      const tmp = `${cacheFile}.${process.pid}.tmp`;
      try {
        writeFileSync(tmp, compiled.createCachedData(), { mode: 0o600 });
        renameSync(tmp, cacheFile); // whole or not at all, whoever else runs the command meanwhile
      } catch {
        rmSync(tmp, { force: true }); // a cache only: the next run compiles, and tries again
        return;
      }
      // Those of earlier builds of this command are never read again, and each is as large as what it compiled.
      const earlier = new RegExp(`^${name}-[0-9a-f]{64}\\.v8cache$`);
      const kept = `${name}-${sha256}.v8cache`;
      try {
        for (const entry of readdirSync(cacheDir)) {
          if (entry !== kept && earlier.test(entry)) rmSync(`${cacheDir}/${entry}`, { force: true });
        }
      } catch {
        // a cache only
      }
    },
  };
}
