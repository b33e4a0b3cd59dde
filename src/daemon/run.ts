// Placeholder replaced when the daemon loop lands; --once and boot do not load this file.

import type { CommandContext } from "../controller/commands.ts";
import { KataError } from "../errors.ts";

export async function runDaemon(_ctx: CommandContext): Promise<number> {
  throw new KataError("not-implemented", "the long-running daemon is not implemented yet; use --once");
}
