#!/usr/bin/env node
// Thin launcher: the code is TypeScript run by Node 24's type stripping (no build step), or its bundle when that
// is current (entry.js). Node's compile cache keeps the compiled modules between runs; it must be on before the
// first import, hence import(). The one-shot commands, `boot` on the boot's critical path above all, run the
// bundle's script form, whose code cache holds what a run compiled (script-form.js).
import { enableCompileCache } from "node:module";

enableCompileCache?.();
const { entry, oneShot, script } = await import("./entry.js");
const argv = process.argv.slice(2);
const form = oneShot(argv) ? script("kata-sysextd") : null;
const { main } = form?.exports ?? (await import(entry("kata-sysextd", "src/cli/daemon.ts")));
process.exitCode = await main(argv);
form?.keepCache();
