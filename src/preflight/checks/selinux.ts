// SELinux: the mode, and the labels of the files Kata executes. Files of a merged sysext show up unlabeled on
// Flatcar; under enforcing that means the shim, the hypervisor or virtiofsd are denied execution.
import { readFile, stat } from "node:fs/promises";
import type { PreflightCheck } from "../../status.ts";
import { type Check, result } from "../check.ts";
import type { PreflightContext } from "../context.ts";
import { helperPath } from "../helpers.ts";
import { locate } from "../locate.ts";
import { readLabels } from "../xattr.ts";
import { SHIM } from "./abi.ts";

export type SelinuxMode = "absent" | "disabled" | "permissive" | "enforcing";

export async function selinuxMode(ctx: PreflightContext): Promise<SelinuxMode> {
  const fs = ctx.host("/sys/fs/selinux");
  try {
    await stat(fs);
  } catch {
    return "absent";
  }
  try {
    return (await readFile(`${fs}/enforce`, "utf8")).trim() === "1" ? "enforcing" : "permissive";
  } catch {
    return "disabled"; // the mount point exists but selinuxfs is not mounted
  }
}

export const selinux: Check = {
  id: "selinux",
  group: "selinux",
  async run(ctx) {
    const mode = await selinuxMode(ctx);
    const out: PreflightCheck[] = [result("selinux-mode", "pass", `SELinux ${mode}`)];
    if (mode === "absent" || mode === "disabled") {
      out.push(result("selinux-labels", "skip", `SELinux ${mode}: labels do not matter`));
      return out;
    }
    // The files Kata executes, with the hypervisors that need each.
    const { hypervisors } = await ctx.kata();
    const wanted = new Map<string, Set<string> | null>([[SHIM, null]]);
    for (const h of hypervisors) {
      for (const p of [h.path, h.virtioFsDaemon]) {
        if (p === null) continue;
        const owners = wanted.get(p);
        if (owners !== null) wanted.set(p, (owners ?? new Set<string>()).add(h.name));
      }
    }
    const located: Array<{ path: string; onDisk: string; owners: Set<string> | null }> = [];
    for (const [path, owners] of wanted) {
      const onDisk = await locate(ctx, path);
      if (onDisk !== null) located.push({ path, onDisk, owners });
    }
    const helper = await helperPath("xattrGet");
    if (helper === null) {
      out.push(
        result("selinux-labels", "warn", `SELinux ${mode}, but the xattr-get helper is not built: labels unknown`, {
          remedy: "build it with `node scripts/build-helpers.mjs` (needs a C compiler) or set KATA_SYSEXTD_XATTR_GET",
        }),
      );
      return out;
    }
    const labels = await readLabels(
      helper,
      located.map((l) => l.onDisk),
      ctx.timeoutMs,
    );
    const status = mode === "enforcing" ? "fail" : "warn";
    const remedy =
      mode === "enforcing"
        ? "label the payload (chcon -t container_runtime_exec_t on the shim, -t bin_t on the hypervisor and virtiofsd) or set SELinux permissive (setenforce 0; Flatcar's default)"
        : "nothing to do while permissive; label the payload before switching to enforcing";
    const good: string[] = [];
    located.forEach(({ path, owners }, i) => {
      const label = labels[i];
      const text = label === undefined ? "unknown" : "error" in label ? label.error : label.label;
      // A label that cannot be read (ENOTSUP on a file system without xattrs) is no label under enforcing either.
      const unreadable = label !== undefined && "error" in label;
      const unlabeled = text === null || unreadable || text.includes(":unlabeled_t:");
      if (!unlabeled) {
        good.push(`${path} ${text}`);
        return;
      }
      const why = unreadable ? ` (its label cannot be read: ${text})` : text === null ? "" : ` (${text})`;
      const detail = `${path} is unlabeled${why} under SELinux ${mode}`;
      if (owners === null) out.push(result("selinux-labels", status, detail, { remedy }));
      else for (const hypervisor of owners) out.push(result("selinux-labels", status, detail, { remedy, hypervisor }));
    });
    if (good.length > 0 || located.length === 0) {
      out.push(
        result(
          "selinux-labels",
          "pass",
          good.length > 0 ? `labeled: ${good.join(", ")}` : "no Kata files found to label",
        ),
      );
    }
    return out;
  },
};
