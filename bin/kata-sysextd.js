#!/usr/bin/env node
// Thin launcher: the code is TypeScript run by Node 24's type stripping (no build step), or its bundle when that
// is current (entry.js). Node's compile cache keeps the compiled modules between runs; it must be on before the
// first import, hence import(). The one-shot commands, `boot` on the boot's critical path above all, run the
// bundle's script form, whose code cache holds what a run compiled (entry.js, script()).
import { enableCompileCache } from "node:module";

enableCompileCache?.();
const { entry, script } = await import("./entry.js");
const argv = process.argv.slice(2);
const form = oneShot(argv) ? script("kata-sysextd") : null;
const { main } = form?.exports ?? (await import(entry("kata-sysextd", "src/cli/daemon.ts")));
process.exitCode = await main(argv);
form?.keepCache();

/**
 * Whether argv is `boot` or `--once` with only --config and --root beside it, which src/cli/daemon.ts runs as a
 * one-shot command (or refuses): never the daemon, which the script form leaves out. Anything else (--help, an
 * option this does not know) runs the split bundle, which has every command: a miss costs time only.
 */
function oneShot(argv) {
  let verb = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "boot" || arg === "--once") verb = true;
    else if (arg === "--config" || arg === "--root") i++;
    else if (!arg.startsWith("--config=") && !arg.startsWith("--root=")) return false;
  }
  return verb;
}
