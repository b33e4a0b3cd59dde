import { stat } from "node:fs/promises";
import type { PreflightContext } from "./context.ts";

/**
 * Whether a device node exists under the host root. In a fixture tree device nodes are plain files, and their
 * presence is what the fixture describes; on the real root only a character device counts.
 */
export async function deviceExists(ctx: PreflightContext, device: string): Promise<boolean> {
  try {
    const st = await stat(ctx.host(device));
    return st.isCharacterDevice() || (ctx.fixtureRoot && st.isFile());
  } catch {
    return false;
  }
}
