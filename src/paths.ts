// Every host path the daemon touches, resolved under --root the way `systemd-sysext --root=DIR` does.
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
    runDir: host("/run/kata-sysextd"),
    apiSocket: host("/run/kata-sysextd/api.sock"),
    activeLink: (name) => host(`/etc/extensions/${name}.raw`),
  };
}
