// Kata's sandbox cgroups: cgroup v2 (the unified hierarchy, Flatcar's default) is what this project supports
// best; a hybrid or v1-only host still runs Kata but with v1 controllers.
import { pathExists } from "../../files.ts";
import { type Check, result } from "../check.ts";

const ID = "cgroup-v2";

export const cgroup: Check = {
  id: ID,
  group: "host",
  async run(ctx) {
    const exists = (p: string): Promise<boolean> => pathExists(ctx.host(p));
    if (await exists("/sys/fs/cgroup/cgroup.controllers")) {
      return [result(ID, "pass", "cgroup v2 (unified hierarchy) mounted at /sys/fs/cgroup")];
    }
    const remedy = "boot with systemd.unified_cgroup_hierarchy=1 (Flatcar's default) to use cgroup v2 only";
    if (await exists("/sys/fs/cgroup/unified/cgroup.controllers")) {
      return [
        result(ID, "warn", "hybrid cgroup hierarchy: v1 controllers, v2 only at /sys/fs/cgroup/unified", { remedy }),
      ];
    }
    if (await exists("/sys/fs/cgroup")) {
      return [result(ID, "warn", "cgroup v1 only", { remedy })];
    }
    return [
      result(ID, "fail", "no cgroup filesystem under /sys/fs/cgroup", { remedy: "mount cgroup2 on /sys/fs/cgroup" }),
    ];
  },
};
