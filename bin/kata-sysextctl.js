#!/usr/bin/env node
import { main } from "../src/cli/ctl.ts";

process.exitCode = await main(process.argv.slice(2));
