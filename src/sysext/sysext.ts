// systemd-sysext, the thing that merges images into /usr and /opt. Two ways to drive it, one interface:
// - the binary with --root (tests, the demo, a sandbox root): merges in the caller's mount namespace;
// - systemd over D-Bus (a real host): the daemon's unit is sandboxed in its own mount namespace, so it must ask
//   systemd to refresh, or the merge would land in the daemon's private namespace instead of the host's.
import { KataError } from "../errors.ts";
import { run } from "../exec.ts";
import { readSmallFile } from "../files.ts";
import type { HostPaths } from "../paths.ts";

export interface Sysext {
  /** Re-merge every extension so the current links take effect. */
  refresh(): Promise<void>;
  /** Names of the extensions merged into /usr now; read from the merge's own bookkeeping. */
  merged(): Promise<string[]>;
  /**
   * Why a merge of the active link cannot be confirmed here, or null. systemd-sysext 252 ignores symlinked
   * images under --root, so in --root mode the daemon reports this instead of rolling back in a loop.
   */
  readonly limitation: string | null;
}

/** A list of extension names; far more than any host merges. */
const MERGED_MAX_BYTES = 64 * 1024;

/** systemd-sysext writes the merged extension names to <hierarchy>/.systemd-sysext/extensions. */
export async function readMerged(paths: HostPaths): Promise<string[]> {
  try {
    const read = await readSmallFile(paths.host("/usr/.systemd-sysext/extensions"), MERGED_MAX_BYTES);
    return read.kind === "ok" ? read.text.split("\n").filter((l) => l.trim() !== "") : [];
  } catch {
    return [];
  }
}

export const ROOT_LIMITATION =
  "systemd-sysext 252 does not follow symlinked images under --root; the merge of the active link is confirmed only on a real host";

export function binarySysext(paths: HostPaths, binary = "systemd-sysext"): Sysext {
  const rootArgs = paths.root === "/" ? [] : [`--root=${paths.root}`];
  return {
    limitation: paths.root === "/" ? null : ROOT_LIMITATION,
    async refresh() {
      const result = await run(binary, ["refresh", ...rootArgs], { timeoutMs: 120_000 });
      if (result.exitCode !== 0) {
        throw new KataError(
          "activation-failed",
          `systemd-sysext refresh failed (exit ${result.exitCode}): ${result.stderr.trim()}`,
          { remedy: "see `systemd-sysext status` and `journalctl -b -u systemd-sysext`" },
        );
      }
    },
    merged: () => readMerged(paths),
  };
}
