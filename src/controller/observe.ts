// Observation: read everything the plan needs off the host, once per pass. Nothing here changes the host.
import { readdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import type { HostPaths } from "../paths.ts";
import { compatible } from "../release/compat.ts";
import { type HostRelease, parseExtensionRelease, readHostReleaseUnder } from "../release/os-release.ts";
import type { ActiveLink, LinkState } from "../store/link.ts";
import { type PersistedState, readState } from "../store/state.ts";
import type { ImageStore, StoredImage } from "../store/store.ts";
import type { Sysext } from "../sysext/sysext.ts";

export interface JudgedImage extends StoredImage {
  /** Whether its extension-release matches the host this observation is for, and why not. */
  compatible: boolean;
  reasons: string[];
}

export interface Observed {
  host: HostRelease;
  arch: string;
  link: LinkState;
  images: JudgedImage[];
  merged: boolean;
  sandboxesRunning: number;
  state: PersistedState;
}

export interface ObserveDeps {
  paths: HostPaths;
  name: string;
  arch: string;
  store: ImageStore;
  link: ActiveLink;
  sysext: Sysext;
}

/** Judges stored images against a host (the booted one, or an update's next release). */
export function judge(images: StoredImage[], host: HostRelease, name: string, arch: string): JudgedImage[] {
  return images.map((image) => {
    const decision = compatible(host, parseExtensionRelease(image.extensionRelease), { name, arch });
    return { ...image, compatible: decision.compatible, reasons: decision.reasons };
  });
}

export async function observe(deps: ObserveDeps): Promise<Observed> {
  const host = await readHostReleaseUnder(deps.paths.host);
  const [link, stored, merged, sandboxesRunning, state] = await Promise.all([
    deps.link.read(),
    deps.store.list(),
    deps.sysext.merged(),
    countKataSandboxes(),
    readState(deps.paths.stateFile),
  ]);
  return {
    host,
    arch: deps.arch,
    link,
    images: judge(stored, host, deps.name, deps.arch),
    merged: merged.includes(deps.name),
    sandboxesRunning,
    state,
  };
}

const SHIM = "containerd-shim-kata-v2";

/** Running Kata sandboxes: one containerd-shim-kata-v2 process each. Always the real /proc of this machine. */
export async function countKataSandboxes(proc = "/proc"): Promise<number> {
  let count = 0;
  for (const pid of await readdir(proc).catch(() => [] as string[])) {
    if (!/^[0-9]+$/.test(pid)) continue;
    const cmdline = await readFile(join(proc, pid, "cmdline"), "latin1").catch(() => "");
    const argv0 = cmdline.split("\0")[0] ?? "";
    if (basename(argv0) === SHIM) count++;
  }
  return count;
}
