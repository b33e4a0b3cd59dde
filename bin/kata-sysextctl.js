#!/usr/bin/env node
// Thin launcher: the code is TypeScript run by Node 24's type stripping (no build step), or its bundle when that
// is current (entry.js). Node's compile cache keeps the compiled modules between runs; it must be on before the
// first import, hence import().
import { enableCompileCache } from "node:module";

enableCompileCache?.();
const { entry } = await import("./entry.js");
const { main } = await import(entry("kata-sysextctl", "src/cli/ctl.ts"));
process.exitCode = await main(process.argv.slice(2));
