// containerd serving the Kata runtime handler. kata-sysextd registers it by writing a complete containerd
// configuration with the Kata runtimes merged in (src/containerd/registration.ts) and a containerd.service drop-in
// that selects it; containerd's socket shows it runs. (Asking containerd over CRI which handlers it loaded is
// left to the e2e tests.)
import { readFile, stat } from "node:fs/promises";
import { parse } from "smol-toml";
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
    out.push(await handler(ctx.host, ctx.containerd));
    return out;
  },
};

async function handler(
  host: (p: string) => string,
  files: { configFile: string; unitDropIn: string } | null,
): Promise<PreflightCheck> {
  const ID = "containerd-handler";
  if (files === null) return result(ID, "skip", "containerd integration disabled ([containerd] enabled = false)");
  const { configFile, unitDropIn } = files;
  const text = await readFile(host(configFile), "utf8").catch(() => null);
  if (text === null) {
    return result(ID, "warn", `${configFile} missing: the kata runtime handler is not registered`, {
      remedy: "run `kata-sysextctl refresh`: the daemon registers the runtimes when it activates the extension",
    });
  }
  const runtimes = kataRuntimes(text);
  if (runtimes.length === 0) {
    return result(ID, "fail", `${configFile} registers no runtime of type ${RUNTIME_TYPE}`, {
      remedy: `remove ${configFile} and run \`kata-sysextctl refresh\` to rewrite it`,
    });
  }
  const dropIn = await readFile(host(unitDropIn), "utf8").catch(() => "");
  if (!dropIn.includes(`CONTAINERD_CONFIG=${configFile}`)) {
    return result(ID, "warn", `${configFile} registers ${runtimes.join(", ")}, but ${unitDropIn} does not select it`, {
      remedy: "run `kata-sysextctl refresh` to rewrite the containerd.service drop-in, then restart containerd",
    });
  }
  return result(ID, "pass", `${configFile} registers ${runtimes.join(", ")} (${RUNTIME_TYPE})`);
}

/** Names of runtime tables with runtime_type io.containerd.kata.v2, wherever the CRI plugin version puts them. */
function kataRuntimes(text: string): string[] {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch {
    return [];
  }
  const found: string[] = [];
  const walk = (value: unknown, key: string): void => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return;
    const table = value as Record<string, unknown>;
    if (table.runtime_type === RUNTIME_TYPE) found.push(key);
    for (const [k, v] of Object.entries(table)) walk(v, k);
  };
  walk(doc, "");
  return found.sort();
}
