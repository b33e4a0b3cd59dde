// `npm run bundle` (and part of `npm ci`): bin/'s commands as esbuild bundles in build/bundle/, split at every
// `await import()`, so a command loads a few prepared files instead of resolving, reading and type-stripping some
// 150 modules one by one (`kata-sysextd boot` is on the boot's critical path). The bundle is a cache, as Node's
// compile cache is: bin/entry.js runs it only while every source file it was built from is unchanged.
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { BuildOptions } from "esbuild";

const PROJECT = resolve(import.meta.dirname, "..");
const OUT = join(PROJECT, "build/bundle");

/** What bin/entry.js finds there: `<name>.js` for each command. */
const ENTRIES = { "kata-sysextd": "src/cli/daemon.ts", "kata-sysextctl": "src/cli/ctl.ts" };

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
