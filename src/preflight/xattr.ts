// Extended attributes through the native xattr-get helper (native/xattr-get.c): Node has no xattr API, and
// getfattr (Debian/Flatcar package attr) is not always there. SELinux labels (security.selinux) for the preflight,
// user.extension-release.strict for the image inspection (src/sysext/inspect.ts).
import { run } from "../exec.ts";

/** A label, null when the file has none (ENODATA), or an error name (ENOENT, …). */
export type Label = { label: string | null } | { error: string };

export async function readLabels(helper: string, files: string[], timeoutMs: number): Promise<Label[]> {
  const values = await readXattrs(helper, "security.selinux", files, timeoutMs);
  return values.map((v) => ("value" in v ? { label: v.value } : v));
}

/** One attribute's value (trailing NULs dropped), null when the file has none (ENODATA), or an error name. */
export type XattrValue = { value: string | null } | { error: string };

/** The attribute `name` of each file, in order; symlinks are not followed. */
export async function readXattrs(
  helper: string,
  name: string,
  files: string[],
  timeoutMs: number,
): Promise<XattrValue[]> {
  if (files.length === 0) return [];
  const { stdout, exitCode, stderr } = await run(helper, [name, ...files], { timeoutMs });
  if (exitCode !== 0) throw new Error(`xattr-get exited ${exitCode}: ${stderr.trim()}`);
  const lines = stdout.split("\n").filter((l) => l !== "");
  return files.map((_, i) => {
    const [kind, value = ""] = (lines[i] ?? "err EPROTO").split(" ");
    if (kind === "ok") return { value: Buffer.from(value, "hex").toString("utf8").replace(/\0+$/, "") };
    return value === "ENODATA" ? { value: null } : { error: value };
  });
}
