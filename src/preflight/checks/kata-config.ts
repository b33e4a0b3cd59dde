// Which hypervisors are configured, and from which files. Everything hypervisor specific depends on this.
import type { PreflightCheck } from "../../status.ts";
import { type Check, result } from "../check.ts";
import { DEFAULTS_DIR, ETC_CONFIG } from "../kata-config.ts";

const ID = "kata-config";

export const kataConfig: Check = {
  id: ID,
  group: "payload",
  async run(ctx) {
    const configs = await ctx.kata();
    const out: PreflightCheck[] = configs.errors.map((e) =>
      result(ID, "fail", e, { remedy: "fix or remove the file; Kata refuses to start with it" }),
    );
    if (configs.hypervisors.length === 0) {
      out.push(
        result(ID, "fail", `no [hypervisor.*] configuration in ${ETC_CONFIG} or ${DEFAULTS_DIR}/configuration*.toml`, {
          remedy: "activate the kata-containers extension (kata-sysextctl status shows whether it is merged)",
        }),
      );
      return out;
    }
    const list = configs.hypervisors.map((h) => `${h.name} (${h.configFile.split("/").pop()})`).join(", ");
    out.push(result(ID, "pass", `hypervisors: ${list}`));
    return out;
  },
};
