#!/usr/bin/env node
// Thin launcher: the daemon is TypeScript run by Node 24's type stripping (no build step).
import { main } from "../src/cli/daemon.ts";

process.exitCode = await main(process.argv.slice(2));
