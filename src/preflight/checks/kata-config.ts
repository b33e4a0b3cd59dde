// Which hypervisors are configured, and from which files. Everything hypervisor specific depends on this.
import { KATA_ETC_CONFIG } from "../../containerd/handlers.ts";
import type { PreflightCheck } from "../../status.ts";
import { type Check, result } from "../check.ts";
import { DEFAULTS_DIR } from "../kata-config.ts";

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
        result(
          ID,
          "fail",
          `no [hypervisor.*] configuration in ${KATA_ETC_CONFIG} or ${DEFAULTS_DIR}/configuration*.toml`,
          {
            remedy: "activate the kata-containers extension (kata-sysextctl status shows whether it is merged)",
          },
        ),
      );
      return out;
    }
    // The operator's file by its full path: its name alone reads like the shipped configuration.toml.
    const shown = (file: string): string => (file === KATA_ETC_CONFIG ? file : (file.split("/").pop() ?? file));
    const list = configs.hypervisors.map((h) => `${h.name} (${shown(h.configFile)})`).join(", ");
    const kata = configs.handlers.find((h) => h.name === "kata");
    out.push(result(ID, "pass", `hypervisors: ${list}${kata ? `; handler kata runs with ${kata.configPath}` : ""}`));
    return out;
  },
};
