// Which module a launcher imports: the esbuild bundle in build/bundle/ (scripts/bundle.ts, run by `npm ci`) while
// every source file it was built from is as it was then, else the TypeScript sources. A hundred stat calls, well
// under a millisecond, decide it; a bundle of other sources than these never runs.
// Builtins through getBuiltinModule: an `import` of node:fs builds a facade of all of it, 2 ms of every start.
const { readFileSync, renameSync, rmSync, statSync, writeFileSync } = process.getBuiltinModule("node:fs");
const { createRequire, getCompileCacheDir } = process.getBuiltinModule("node:module");
const { fileURLToPath, pathToFileURL } = process.getBuiltinModule("node:url");

const root = fileURLToPath(new URL("../", import.meta.url));

/** The module to import for command `name` ("kata-sysextd", "kata-sysextctl"), whose source is `source`. */
export function entry(name, source) {
  return pathToFileURL(current() ? `${root}build/bundle/${name}.js` : `${root}${source}`).href;
}

/**
 * The script form of command `name` (scripts/bundle.ts says why it exists), run: `exports` has its `main`. Null
 * when the bundle is not current or has no such form; then import entry(). V8 compiles it with the code cache
 * the last run left in Node's compile cache folder; keepCache(), once the command is done, writes that cache when
 * there was none or V8 refused it: made after the run, it holds every function the command compiled.
 */
export function script(name) {
  if (!current()) return null;
  const file = `${root}build/bundle/${name}.cjs`;
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
  const url = new URL(`../build/bundle/${name}.cjs`, import.meta.url);
  const module = { exports: {} };
  compiled.runInThisContext()(module.exports, createRequire(url), module, url.href, `${root}build/bundle`);
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
      }
    },
  };
}

let isCurrent;

function current() {
  isCurrent ??= judge();
  return isCurrent;
}

function judge() {
  try {
    const { inputs } = JSON.parse(readFileSync(`${root}build/bundle/inputs.json`, "utf8"));
    return inputs.every(([file, size, mtimeMs]) => {
      const now = statSync(`${root}${file}`, { throwIfNoEntry: false });
      return now !== undefined && now.size === size && now.mtimeMs === mtimeMs;
    });
  } catch {
    return false; // never built, or built by another version of this script
  }
}
