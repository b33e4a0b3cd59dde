#!/usr/bin/env node
// Thin launcher: the code is TypeScript run by Node 24's type stripping (no build step). Node's compile cache
// keeps the stripped, compiled modules between runs; it must be on before the first import, hence import().
import { enableCompileCache } from "node:module";

enableCompileCache?.();
const { main } = await import("../src/cli/ctl.ts");
process.exitCode = await main(process.argv.slice(2));
