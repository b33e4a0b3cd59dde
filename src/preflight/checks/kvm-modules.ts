// kvm plus a provider (kvm_intel, kvm_amd, or another such as kvm_pvm), loaded or built in.
import { type Check, result } from "../check.ts";
import { KVM_PROVIDERS, kvmProviders } from "../modules.ts";
import { kvmWorks } from "./kvm-usable.ts";

const ID = "kvm-modules";

export const kvmModules: Check = {
  id: ID,
  group: "virtualisation",
  async run(ctx) {
    const modules = await ctx.modules();
    const cpu = await ctx.cpu();
    const expected = cpu?.vendor === "amd" ? "kvm_amd" : "kvm_intel";
    const providers = kvmProviders(modules);
    const kvm = await modules.state("kvm");
    const describe = async (name: string): Promise<string> =>
      `${name} (${await modules.state(name)}${KVM_PROVIDERS[name] ? `: ${KVM_PROVIDERS[name]}` : ""})`;

    if (kvm === "absent" && providers.length === 0) {
      return [
        result(ID, "fail", "neither kvm nor a KVM provider module is loaded", { remedy: `modprobe ${expected}` }),
      ];
    }
    if (providers.length === 0) {
      if (kvmWorks(await ctx.kvm())) {
        return [result(ID, "pass", `kvm (${kvm}); provider module not identified, but /dev/kvm works`)];
      }
      return [
        result(ID, "fail", `kvm is ${kvm} but no provider (kvm_intel, kvm_amd, kvm_pvm) is`, {
          remedy: `modprobe ${expected}`,
        }),
      ];
    }
    const parts = [kvm === "absent" ? "kvm (absent)" : `kvm (${kvm})`];
    for (const p of providers) parts.push(await describe(p));
    return [result(ID, "pass", parts.join(", "))];
  },
};
