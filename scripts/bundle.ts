// `npm run bundle` (and part of `npm ci`): bin/'s commands as esbuild bundles in build/bundle/, split at every
// `await import()`, so a command loads a few prepared files instead of resolving, reading and type-stripping some
// 150 modules one by one (`kata-sysextd boot` is on the boot's critical path). The bundle is a cache, as Node's
// compile cache is: bin/entry.js runs it only while every source file it was built from is unchanged.
//
// `kata-sysextd boot` and `--once` run from a third form, <name>.cjs: the same sources as one classic script,
// which bin/entry.js compiles with a V8 code cache it makes after the command ran (scriptForm below says why).
import { createHash } from "node:crypto";
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { BuildOptions, Plugin } from "esbuild";

const PROJECT = resolve(import.meta.dirname, "..");
const OUT = join(PROJECT, "build/bundle");

/** What bin/entry.js finds there: `<name>.js` for each command. */
const ENTRIES = { "kata-sysextd": "src/cli/daemon.ts", "kata-sysextctl": "src/cli/ctl.ts" };

/**
 * The one-shot commands' form (`kata-sysextd boot`, `--once`), `<name>.cjs`: the whole command as one classic
 * script. Node's compile cache is made when a module is compiled, before it runs, so it holds only the code V8
 * compiles up front; every function a command calls is compiled again from source in every process, about half
 * of what the boot step spent after Node's own start. A script's code cache can be made after it ran
 * (bin/entry.js), with everything the command used: the next boot deserializes it instead. Its first line names
 * the SHA-256 of the rest, which keys that cache: V8 itself only checks a cache against the source's length.
 */
const SCRIPTS = { "kata-sysextd": "src/cli/daemon.ts" };

/**
 * The daemon is left out of the script form: half its size (fastify and the API, the watchers) and never run by
 * a one-shot command. bin/kata-sysextd.js runs the script form only for an argv that cannot start the daemon.
 */
const withoutDaemon: Plugin = {
  name: "without-daemon",
  setup(b) {
    b.onResolve({ filter: /[\\/]daemon[\\/]run\.ts$/ }, () => ({ path: "daemon", namespace: "left-out" }));
    b.onLoad({ filter: /.*/, namespace: "left-out" }, () => ({
      contents: `export function runDaemon() {
  throw new Error("internal: the daemon is not in the one-shot script form (bin/kata-sysextd.js chose it)");
}`,
      loader: "js",
    }));
  },
};

/**
 * Builtins the script form loads at their first use rather than with the modules that import them: node:fs/promises
 * brings readline and the REPL's history along (some 1.5 ms), and the boot step with nothing to do calls none of it
 * (src/files.ts: small local files are read directly). Each of its functions is a function of the same name that
 * loads the builtin and calls it; anything else it exports is taken from node:fs, whose it is.
 */
const LAZY_BUILTINS = ["node:fs/promises", "node:timers/promises"];

const lazyBuiltins: Plugin = {
  name: "lazy-builtins",
  setup(b) {
    b.onResolve({ filter: /^node:(fs|timers)\/promises$/ }, (args) =>
      LAZY_BUILTINS.includes(args.path) ? { path: args.path, namespace: "lazy-builtin" } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "lazy-builtin" }, (args) => {
      const builtin = process.getBuiltinModule(args.path) as Record<string, unknown>;
      const fs = process.getBuiltinModule("node:fs") as unknown as Record<string, unknown>;
      const lines = [`const load = () => process.getBuiltinModule(${JSON.stringify(args.path)});`];
      for (const [name, value] of Object.entries(builtin)) {
        if (!/^[A-Za-z_$][\w$]*$/.test(name)) continue;
        if (typeof value === "function") {
          lines.push(`export function ${name}(...args) { return load().${name}(...args); }`);
        } else if (fs[name] === value) {
          lines.push(`export const ${name} = process.getBuiltinModule("node:fs").${name};`);
        }
      }
      return { contents: lines.join("\n"), loader: "js" };
    });
  },
};

/** `import.meta` of the modules in a script form: the script's own URL and folder, passed in by bin/entry.js. */
export const SCRIPT_PARAMETERS = ["__bundleUrl", "__bundleDir"] as const;

/** Options shared with scripts/build-sysext.ts. */
export function bundleOptions(version: string): BuildOptions {
  return {
    absWorkingDir: PROJECT,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node24",
    // dbus-next's optional transports (the usocket addon, X11 address lookup) are never used: leave them out.
    external: ["usocket", "x11"],
    // CommonJS dependencies call require(): give the ES module one, rooted at the bundle's own folder.
    banner: {
      js: 'import { createRequire as __bundleRequire } from "node:module";\nconst require = __bundleRequire(import.meta.url);',
    },
    // src/version.ts reads ../package.json at run time, which is not beside a bundle: the bundle carries the version.
    plugins: [
      {
        name: "inline-version",
        setup(b) {
          b.onLoad({ filter: /[\\/]src[\\/]version\.ts$/ }, () => ({
            contents: `export const DAEMON_VERSION = ${JSON.stringify(version)};\n`,
            loader: "ts",
          }));
        },
      },
    ],
    // ASCII, non-ASCII escaped: V8 keeps a module's source in memory, and one character beyond Latin-1 (a "…" in
    // a message) makes it keep the whole file at two bytes a character.
    charset: "ascii",
    logLevel: "warning",
    metafile: true,
  };
}

/**
 * Writes the script form of the command whose source is `entry` to `outfile` (scripts/build-sysext.ts builds the
 * image's with it too). `options`: bundleOptions(), and what else the caller's build adds (a legal comments mode).
 */
export async function buildScriptForm(options: BuildOptions, entry: string, outfile: string): Promise<string[]> {
  const { build } = await import("esbuild");
  const result = await build({
    ...options,
    entryPoints: [entry],
    outfile,
    format: "cjs",
    plugins: [...(options.plugins ?? []), withoutDaemon, lazyBuiltins],
    // bin/script-form.js passes require (and exports, module) to the script, as Node does to a CommonJS module.
    banner: {},
    define: { "import.meta.url": SCRIPT_PARAMETERS[0], "import.meta.dirname": SCRIPT_PARAMETERS[1] },
    write: false,
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: options.legalComments ?? "none",
  });
  const [output] = result.outputFiles ?? [];
  if (output === undefined) throw new Error(`no script form built for ${entry}`);
  // Wrapped as Node wraps a CommonJS module, with import.meta's two parameters: bin/script-form.js compiles the
  // file as it is, without first copying a megabyte into a string that wraps it.
  const script = Buffer.concat([
    Buffer.from(`(function (exports, require, module, ${SCRIPT_PARAMETERS.join(", ")}) {`),
    output.contents,
    Buffer.from("\n})"),
  ]);
  const sha256 = createHash("sha256").update(script).digest("hex");
  writeFileSync(outfile, Buffer.concat([Buffer.from(`//${sha256}\n`), script]));
  return Object.keys(result.metafile?.inputs ?? {});
}

async function bundle(): Promise<void> {
  const { build } = await import("esbuild");
  const version = (JSON.parse(readFileSync(join(PROJECT, "package.json"), "utf8")) as { version: string }).version;
  // Built beside and renamed: a command started meanwhile runs the old bundle or the new one, never half of one.
  const tmp = `${OUT}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  // One build per command: chunks shared by both would cut each command's modules into more, smaller chunks, and
  // every chunk is one more module to load (27 of them cost a start some 6 ms).
  const own = new Set<string>();
  for (const [name, file] of Object.entries(ENTRIES)) {
    const result = await build({
      ...bundleOptions(version),
      entryPoints: { [name]: join(PROJECT, file) },
      outdir: tmp,
      splitting: true,
      chunkNames: `${name}-[hash]`,
      // V8 keeps every loaded module's source: without comments and blanks the idle daemon holds ~1.5 MiB less.
      // Names stay, so stack traces still name functions; delete build/bundle/ to debug on the sources.
      minifyWhitespace: true,
      minifySyntax: true,
      legalComments: "none",
    });
    for (const input of Object.keys(result.metafile?.inputs ?? {}))
      if (!input.includes("node_modules/")) own.add(input);
  }
  for (const [name, file] of Object.entries(SCRIPTS)) {
    await buildScriptForm(bundleOptions(version), join(PROJECT, file), join(tmp, `${name}.cjs`));
  }
  // Our own inputs by size and mtime, as make judges them; the dependencies by npm's record of the last install.
  const inputs = [...own, "package.json", "node_modules/.package-lock.json"].map((file) => {
    const stat = statSync(join(PROJECT, file));
    return [file, stat.size, stat.mtimeMs];
  });
  writeFileSync(join(tmp, "inputs.json"), `${JSON.stringify({ inputs })}\n`);
  rmSync(`${OUT}.old`, { recursive: true, force: true });
  try {
    renameSync(OUT, `${OUT}.old`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  renameSync(tmp, OUT);
  rmSync(`${OUT}.old`, { recursive: true, force: true });
}

if (import.meta.main) {
  try {
    await bundle();
  } catch (err) {
    // Without esbuild (npm ci --omit=dev) bin/ runs the TypeScript sources: slower to start, the same commands.
    process.stderr.write(`bundle: not built (${(err as Error).message}); bin/ runs the TypeScript sources\n`);
  }
}
