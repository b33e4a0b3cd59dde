// Path resolution inside another root, the way the dynamic loader would see it after a chroot: absolute symlinks
// (Flatcar's /lib64 -> /usr/lib64) are followed relative to the root, never out of it into this machine's files.
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { resolveUnderRoot } from "../paths.ts";

/** The on-disk path of `path` (absolute, as seen inside `root`), with every symlink resolved; null if absent. */
export function resolveInRoot(root: string, path: string): Promise<string | null> {
  return resolveUnderRoot(root, path).catch(() => null);
}

/** Whether `path` inside `root` resolves to an existing regular file. */
export async function regularFileInRoot(root: string, path: string): Promise<string | null> {
  const onDisk = await resolveInRoot(root, path);
  if (onDisk === null) return null;
  try {
    return (await stat(onDisk)).isFile() ? onDisk : null;
  } catch {
    return null;
  }
}

/** Library directories of the host's loader: /etc/ld.so.conf (with its includes), then the built-in defaults. */
export async function hostLibDirs(root: string): Promise<string[]> {
  const dirs = await ldSoConf(root, "/etc/ld.so.conf", 0);
  // glibc's trusted directories on x86-64 Debian (multiarch) and on Flatcar (/usr/lib64, /lib64 -> usr/lib64).
  const defaults = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];
  return [...new Set([...dirs, ...defaults])];
}

async function ldSoConf(root: string, file: string, depth: number): Promise<string[]> {
  if (depth > 4) return [];
  let text: string;
  try {
    text = await readFile(join(root, file), "utf8");
  } catch {
    return [];
  }
  const dirs: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") continue;
    const include = /^include\s+(.+)$/.exec(line);
    if (include?.[1] === undefined) {
      if (line.startsWith("/")) dirs.push(line);
      continue;
    }
    for (const pattern of include[1].split(/\s+/)) {
      for (const included of await expandGlob(root, pattern)) dirs.push(...(await ldSoConf(root, included, depth + 1)));
    }
  }
  return dirs;
}

/** Enough of glob(3) for ld.so.conf: a `*` in the last path component only ("/etc/ld.so.conf.d/*.conf"). */
async function expandGlob(root: string, pattern: string): Promise<string[]> {
  const slash = pattern.lastIndexOf("/");
  const dir = pattern.slice(0, slash) || "/";
  const base = pattern.slice(slash + 1);
  if (!base.includes("*")) return [pattern];
  const re = new RegExp(`^${base.split("*").map(escapeRegExp).join(".*")}$`);
  try {
    return (await readdir(join(root, dir)))
      .filter((n) => re.test(n))
      .sort()
      .map((n) => `${dir}/${n}`);
  } catch {
    return [];
  }
}

const escapeRegExp = (s: string): string => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
