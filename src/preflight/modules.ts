// Which kernel modules are present: /proc/modules lists loaded loadable modules, /sys/module also shows built-in
// ones (a built-in module has no initstate file). Some hosts (this VM) have no /proc/modules at all.
import { access, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

export interface Modules {
  has(name: string): boolean;
  /** "built-in", "loaded" (a loadable module) or "absent". */
  state(name: string): Promise<"built-in" | "loaded" | "absent">;
  /** Module parameter value from /sys/module/<name>/parameters/<param>, trimmed; null when absent. */
  param(name: string, param: string): Promise<string | null>;
}

export async function readModules(host: (path: string) => string): Promise<Modules> {
  const listed = new Set<string>();
  try {
    for (const line of (await readFile(host("/proc/modules"), "utf8")).split("\n")) {
      const name = line.split(" ")[0];
      if (name) listed.add(name);
    }
  } catch {
    // no /proc/modules: a kernel without loadable module support, or a fixture; /sys/module still tells
  }
  let inSys = new Set<string>();
  try {
    inSys = new Set(await readdir(host("/sys/module")));
  } catch {
    // no /sys/module
  }
  const sysModule = (...parts: string[]): string => join(host("/sys/module"), ...parts);
  return {
    has: (name) => listed.has(name) || inSys.has(name),
    state: async (name) => {
      if (listed.has(name)) return "loaded";
      if (!inSys.has(name)) return "absent";
      try {
        await access(sysModule(name, "initstate"));
        return "loaded";
      } catch {
        return "built-in";
      }
    },
    param: async (name, param) => {
      try {
        return (await readFile(sysModule(name, "parameters", param), "utf8")).trim();
      } catch {
        return null;
      }
    },
  };
}

/** Modules that provide /dev/kvm on x86-64, with what they mean for the operator. */
export const KVM_PROVIDERS: Record<string, string> = {
  kvm_intel: "Intel VT-x",
  kvm_amd: "AMD-V",
  kvm_pvm: "paravirtual (PVM), no hardware virtualisation needed",
};

export function kvmProviders(modules: Modules): string[] {
  return Object.keys(KVM_PROVIDERS).filter((name) => modules.has(name));
}
