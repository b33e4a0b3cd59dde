// Which runtime handlers this host can run, decided exactly as the registration decides (src/containerd/
// selection.ts over facts.ts): the ones offered to Kubernetes and, for the others, why not. A handler pinned in
// [containerd] handlers that cannot run fails here with its reason instead of being dropped silently.
import { readFile } from "node:fs/promises";
import { handlerFacts, hostFacts } from "../../containerd/facts.ts";
import { devmapperIn } from "../../containerd/schema.ts";
import { selectHandlers } from "../../containerd/selection.ts";
import type { PreflightCheck } from "../../status.ts";
import { type Check, result } from "../check.ts";

const ID = "runtime-handlers";

/** Whether the merged containerd configuration sets up devmapper (what Firecracker needs). */
async function devmapper(host: (p: string) => string, configFile: string | null): Promise<boolean> {
  if (configFile === null) return false;
  // An unreadable file is the containerd-handler check's finding.
  return devmapperIn(await readFile(host(configFile), "utf8").catch(() => ""));
}

export const runtimeHandlers: Check = {
  id: ID,
  group: "host",
  async run(ctx) {
    const { handlers } = await ctx.kata();
    if (handlers.length === 0)
      return [result(ID, "skip", "no Kata configuration shipped: the extension is not merged")];
    const pinned = ctx.containerd?.handlers ?? null;
    const facts = await handlerFacts(handlers, { hostRoot: ctx.paths.root, payloadRoot: ctx.payloadRoot });
    const host = await hostFacts(ctx.host, await devmapper(ctx.host, ctx.containerd?.configFile ?? null));
    const verdicts = selectHandlers(facts, host, pinned);
    const out: PreflightCheck[] = verdicts
      .filter((v) => v.pinned && !v.registered)
      .map((v) =>
        result(ID, "fail", `pinned handler ${v.name} cannot run here: ${v.reason}`, {
          remedy: `provide what is missing, or remove ${v.name} from [containerd] handlers`,
        }),
      );
    const offered = verdicts.filter((v) => v.registered).map((v) => v.name);
    const left = verdicts.filter((v) => !v.registered && !v.pinned).map((v) => `${v.name} (${v.reason})`);
    const detail = `offered: ${offered.join(", ") || "none"}${left.length > 0 ? `; not offered: ${left.join("; ")}` : ""}`;
    out.unshift(
      offered.length > 0
        ? result(ID, "pass", detail)
        : result(ID, "warn", detail, { remedy: "no Kata handler can run on this host; see the reasons above" }),
    );
    return out;
  },
};
