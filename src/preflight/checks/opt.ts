// A merged extension that ships /opt makes /opt a read-only overlay on Flatcar: anything else that writes to
// /opt (other tools, an operator's scripts) breaks while Kata is merged. Worth a warning, not a failure.
import { readFile } from "node:fs/promises";
import { pathExists } from "../../files.ts";
import { type Check, result } from "../check.ts";

const ID = "opt-readonly";

export const opt: Check = {
  id: ID,
  group: "host",
  async run(ctx) {
    const ships = await pathExists(ctx.payload("/opt/kata"));
    if (!ships) return [result(ID, "pass", "the extension ships nothing under /opt")];
    const mountinfo = await readFile(ctx.host("/proc/self/mountinfo"), "utf8").catch(() => "");
    // mountinfo fields: id parent major:minor root mountpoint options ... - fstype source super-options
    const optMount = mountinfo
      .split("\n")
      .map((l) => l.split(" "))
      .find((f) => f[4] === "/opt" && f[f.indexOf("-") + 1] === "overlay");
    const now = optMount ? " (now: a read-only overlay is mounted on /opt)" : "";
    return [
      result(ID, "warn", `the extension ships /opt/kata: /opt is read-only while it is merged${now}`, {
        remedy: "keep other software's writable data out of /opt (kata-sysextd itself stores images under /var/lib)",
      }),
    ];
  },
};
