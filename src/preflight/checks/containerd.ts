// containerd serving the Kata runtime handler: the daemon's drop-in registers io.containerd.kata.v2, and
// containerd's socket shows it runs. (Asking containerd over CRI which handlers it loaded is left to e2e tests.)
import { readFile, stat } from "node:fs/promises";
import type { PreflightCheck } from "../../status.ts";
import { type Check, result } from "../check.ts";

const SOCKET = "/run/containerd/containerd.sock";
const RUNTIME_TYPE = "io.containerd.kata.v2";

export const containerd: Check = {
  id: "containerd",
  group: "host",
  async run(ctx) {
    const out: PreflightCheck[] = [];
    const running = await stat(ctx.host(SOCKET)).then(
      (st) => st.isSocket() || (ctx.fixtureRoot && st.isFile()),
      () => false,
    );
    out.push(
      running
        ? result("containerd-running", "pass", `containerd socket ${SOCKET} present`)
        : result("containerd-running", "warn", `containerd is not running (no ${SOCKET})`, {
            remedy: "systemctl enable --now containerd",
          }),
    );
    const dropIn = ctx.containerdDropIn;
    if (dropIn === null) {
      out.push(result("containerd-handler", "skip", "containerd integration disabled ([containerd] enabled = false)"));
      return out;
    }
    const text = await readFile(ctx.host(dropIn), "utf8").catch(() => null);
    if (text === null) {
      out.push(
        result("containerd-handler", "warn", `${dropIn} missing: the kata runtime handler is not registered`, {
          remedy: "run `kata-sysextctl refresh`: the daemon writes the drop-in when it activates the extension",
        }),
      );
    } else if (!text.includes(RUNTIME_TYPE)) {
      out.push(
        result("containerd-handler", "fail", `${dropIn} does not register ${RUNTIME_TYPE}`, {
          remedy: `remove ${dropIn} and run \`kata-sysextctl refresh\` to rewrite it`,
        }),
      );
    } else {
      out.push(result("containerd-handler", "pass", `${dropIn} registers ${RUNTIME_TYPE}`));
    }
    return out;
  },
};
