// systemd-sysext driven through systemd, for a real host. The daemon's unit runs in its own mount namespace
// (ProtectSystem=, PrivateTmp=, …): a merge done there would be invisible to the host. Restarting
// systemd-sysext.service (unmerge, then merge) runs in the host's namespace, and the job is tracked until
// systemd says it is done. Newer systemd also offers `ExecReload=systemd-sysext refresh`; 252 has none.
import type { HostPaths } from "../paths.ts";
import type { SystemdManager } from "../systemd/manager.ts";
import { readMerged, type Sysext } from "./sysext.ts";

export const SYSEXT_UNIT = "systemd-sysext.service";

export function systemdSysext(paths: HostPaths, systemd: SystemdManager): Sysext {
  return {
    limitation: null,
    async refresh() {
      await systemd.restartUnit(SYSEXT_UNIT);
    },
    merged: () => readMerged(paths),
  };
}
