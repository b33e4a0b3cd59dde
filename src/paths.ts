// Every host path the daemon touches, resolved under --root the way `systemd-sysext --root=DIR` does.
import { lstatSync, readlinkSync } from "node:fs";
import { realpath } from "node:fs/promises";
import { join, resolve } from "node:path";

export interface HostPaths {
  /** The root the paths are resolved under; "/" on a real host. */
  readonly root: string;
  /** Resolve an absolute host path ("/etc/...") under the root. */
  host(path: string): string;
  readonly configFile: string;
  readonly extensionsDir: string;
  readonly storeDir: string;
  readonly quarantineDir: string;
  readonly stateFile: string;
  /** What kata-sysextd wrote into the reboot sentinel, so it only ever removes its own (cluster/reboot-sentinel.ts). */
  readonly rebootMarker: string;
  readonly runDir: string;
  readonly apiSocket: string;
  activeLink(name: string): string;
}

export function hostPaths(root = "/"): HostPaths {
  const absRoot = resolve(root);
  const host = (path: string): string => (absRoot === "/" ? path : join(absRoot, path));
  return {
    root: absRoot,
    host,
    configFile: host("/etc/kata-sysextd/config.toml"),
    extensionsDir: host("/etc/extensions"),
    storeDir: host("/var/lib/kata-sysextd/images"),
    quarantineDir: host("/var/lib/kata-sysextd/quarantine"),
    stateFile: host("/var/lib/kata-sysextd/state.json"),
    rebootMarker: host("/var/lib/kata-sysextd/reboot-sentinel.owner"),
    runDir: host("/run/kata-sysextd"),
    apiSocket: host("/run/kata-sysextd/api.sock"),
    activeLink: (name) => host(`/etc/extensions/${name}.raw`),
  };
}

/** systemd's CHASE_MAX: symlinks one lookup may follow. */
const MAX_LINKS = 32;

/** What one component of a path is, for chase(): a symlink with its target, or anything else. */
export type PathStep = { link: string } | { link: null };

/**
 * `path`'s components with every symlink followed inside a root, as systemd's chase_symlinks() with
 * CHASE_PREFIX_ROOT does: an absolute target restarts at the root and ".." stops at it. `step` looks at the
 * components so far (relative to the root) and throws for a missing one. Rejects with ELOOP after MAX_LINKS links.
 */
export async function chase(path: string, step: (parts: string[]) => Promise<PathStep> | PathStep): Promise<string[]> {
  const pending = path.split("/").filter((c) => c !== "" && c !== ".");
  const done: string[] = [];
  let links = 0;
  for (let part = pending.shift(); part !== undefined; part = pending.shift()) {
    if (part === "..") {
      done.pop();
      continue;
    }
    const { link } = await step([...done, part]);
    if (link === null) {
      done.push(part);
      continue;
    }
    if (++links > MAX_LINKS) {
      throw Object.assign(new Error(`${path}: more than ${MAX_LINKS} symbolic links`), { code: "ELOOP" });
    }
    if (link.startsWith("/")) done.length = 0;
    pending.unshift(...link.split("/").filter((c) => c !== "" && c !== "."));
  }
  return done;
}

/**
 * The on-disk path of `path` (absolute, as seen inside `root`) with every symlink followed inside the root (chase),
 * so /etc/os-release -> /usr/lib/os-release reads the root's file, not this machine's. Rejects with the failing
 * step's errno (ENOENT for a missing component, ELOOP after MAX_LINKS links).
 */
export async function resolveUnderRoot(root: string, path: string): Promise<string> {
  if (resolve(root) === "/") return realpath(path);
  // One lstat per component, synchronously: metadata the kernel answers from its caches, where a round trip
  // through the thread pool each cost more than the lookup (os-release is read so twice per boot step).
  const parts = await chase(path, (sofar) => {
    const candidate = join(root, ...sofar);
    return lstatSync(candidate).isSymbolicLink() ? { link: readlinkSync(candidate) } : { link: null };
  });
  return join(root, ...parts);
}
