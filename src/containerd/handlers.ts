// Which Kata runtime handlers containerd gets, and the Kata configuration each one runs with. The registration
// (what containerd is told) and the preflight (what it judges) both ask here, so they cannot disagree.
import { basename, dirname } from "node:path";
import { pathExists } from "../files.ts";

export const KATA_DEFAULTS_DIR = "opt/kata/share/defaults/kata-containers";
/** The operator's Kata configuration, a host path: Kata's own runtime prefers it to the shipped defaults. */
export const KATA_ETC_CONFIG = "/etc/kata-containers/configuration.toml";

export interface RuntimeHandler {
  /** The runtime class name pods ask for: kata, kata-clh, kata-qemu, … */
  name: string;
  /** The Kata configuration this handler uses: KATA_ETC_CONFIG, or a shipped file inside the merged tree. */
  configPath: string;
  /** The snapshotter containerd must use for this handler's containers (kata-fc: devmapper), when not the default. */
  snapshotter?: string;
}

/**
 * Handlers for the Kata configurations an image ships, the way kata-deploy names them: configuration-clh.toml
 * becomes kata-clh. The default "kata" runs with the operator's /etc/kata-containers/configuration.toml when the
 * host has one, as Kata itself would without a ConfigPath; else with the shipped configuration.toml, else the
 * Cloud Hypervisor or QEMU one.
 */
export function kataHandlers(imageFiles: readonly string[], host: { etcConfig: boolean }): RuntimeHandler[] {
  const configs = imageFiles
    .filter((f) => dirname(f) === KATA_DEFAULTS_DIR && /^configuration(-[a-z0-9-]+)?\.toml$/.test(basename(f)))
    .map((f) => basename(f))
    .sort();
  const handlers = configs
    .filter((c) => c !== "configuration.toml")
    .map((c) => ({
      name: `kata-${c.slice("configuration-".length, -".toml".length)}`,
      configPath: `/${KATA_DEFAULTS_DIR}/${c}`,
    }));
  const shipped =
    configs.find((c) => c === "configuration.toml") ??
    configs.find((c) => c === "configuration-clh.toml") ??
    configs.find((c) => c === "configuration-qemu.toml") ??
    configs[0];
  const fallback = shipped === undefined ? undefined : `/${KATA_DEFAULTS_DIR}/${shipped}`;
  const configPath = host.etcConfig ? KATA_ETC_CONFIG : fallback;
  return configPath === undefined ? handlers : [{ name: "kata", configPath }, ...handlers];
}

/**
 * The handlers as they are on this host now; `host` resolves host paths under --root. Like Kata's own lookup,
 * a symlink at /etc/kata-containers/configuration.toml counts only when its target exists.
 */
export async function runtimeHandlers(
  imageFiles: readonly string[],
  host: (path: string) => string,
): Promise<RuntimeHandler[]> {
  return kataHandlers(imageFiles, { etcConfig: await pathExists(host(KATA_ETC_CONFIG)) });
}
