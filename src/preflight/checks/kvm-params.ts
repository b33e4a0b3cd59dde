// Provider parameters that change what guests can do: nested (VMs inside Kata guests), unrestricted_guest and
// ept/npt (without them guest real mode and paging are emulated: slow, and some guest firmware fails to boot).
import { type Check, result } from "../check.ts";
import { kvmProviders } from "../modules.ts";

const ID = "kvm-params";
const on = (v: string | null): boolean => v === "Y" || v === "1";

export const kvmParams: Check = {
  id: ID,
  group: "virtualisation",
  async run(ctx) {
    const modules = await ctx.modules();
    const provider = kvmProviders(modules).find((p) => p === "kvm_intel" || p === "kvm_amd");
    if (provider === undefined) {
      const other = kvmProviders(modules)[0];
      return [
        result(
          ID,
          "skip",
          other
            ? `${other} has no nested/unrestricted_guest parameters`
            : "no kvm_intel or kvm_amd module to read parameters from",
        ),
      ];
    }
    const names = provider === "kvm_intel" ? ["nested", "unrestricted_guest", "ept"] : ["nested", "npt"];
    const values = new Map<string, string | null>();
    for (const name of names) values.set(name, await modules.param(provider, name));
    const shown = names.map((n) => `${n}=${values.get(n) ?? "?"}`).join(", ");
    const nestedNote = on(values.get("nested") ?? null) ? "" : " (guests cannot run VMs themselves)";
    const off = names.filter((n) => n !== "nested" && values.get(n) !== null && !on(values.get(n) ?? null));
    if (off.length > 0) {
      return [
        result(ID, "warn", `${provider}: ${shown}${nestedNote}`, {
          remedy: `reload ${provider} with ${off.map((n) => `${n}=1`).join(" ")} (e.g. in /etc/modprobe.d/kvm.conf); without it guest firmware runs emulated and may fail to boot`,
        }),
      ];
    }
    return [result(ID, "pass", `${provider}: ${shown}${nestedNote}`)];
  },
};
