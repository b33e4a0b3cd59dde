// Which module a launcher imports: the esbuild bundle in build/bundle/ (scripts/bundle.ts, run by `npm ci`) while
// every source file it was built from is as it was then, else the TypeScript sources. A hundred stat calls, well
// under a millisecond, decide it; a bundle of other sources than these never runs.
// Builtins through getBuiltinModule: an `import` of node:fs builds a facade of all of it, 2 ms of every start.
import { runScriptForm } from "./script-form.js";

export { oneShot } from "./script-form.js";

const { readFileSync, statSync } = process.getBuiltinModule("node:fs");
const { fileURLToPath, pathToFileURL } = process.getBuiltinModule("node:url");

const root = fileURLToPath(new URL("../", import.meta.url));

/** The module to import for command `name` ("kata-sysextd", "kata-sysextctl"), whose source is `source`. */
export function entry(name, source) {
  return pathToFileURL(current() ? `${root}build/bundle/${name}.js` : `${root}${source}`).href;
}

/**
 * The bundle's script form of command `name`, run (script-form.js); null when the bundle is not current or has no
 * such form: then import entry().
 */
export function script(name) {
  return current() ? runScriptForm(new URL(`../build/bundle/${name}.cjs`, import.meta.url), name) : null;
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
