// SELinux labels (the security.selinux extended attribute) through the native xattr-get helper
// (native/xattr-get.c): Node has no xattr API, and getfattr (Debian/Flatcar package attr) is not always there.
import { run } from "../exec.ts";

/** A label, null when the file has none (ENODATA), or an error name (ENOENT, …). */
export type Label = { label: string | null } | { error: string };

export async function readLabels(helper: string, files: string[], timeoutMs: number): Promise<Label[]> {
  if (files.length === 0) return [];
  const { stdout, exitCode, stderr } = await run(helper, ["security.selinux", ...files], { timeoutMs });
  if (exitCode !== 0) throw new Error(`xattr-get exited ${exitCode}: ${stderr.trim()}`);
  const lines = stdout.split("\n").filter((l) => l !== "");
  return files.map((_, i) => {
    const [kind, value = ""] = (lines[i] ?? "err EPROTO").split(" ");
    if (kind === "ok") return { label: Buffer.from(value, "hex").toString("utf8").replace(/\0+$/, "") };
    return value === "ENODATA" ? { label: null } : { error: value };
  });
}
