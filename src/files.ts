// Small file-system questions every module asks. Writes that must survive a crash live in src/store/fsutil.ts.
import { access } from "node:fs/promises";

/** Whether `path` exists (following symlinks); any error reads as "no". */
export function pathExists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
