// Observation: read everything the plan needs off the host, once per pass. Nothing here changes the host.
import { closeSync, openSync, readdirSync, readSync } from "node:fs";
import { basename, join } from "node:path";
import type { HostPaths } from "../paths.ts";
import { compatible } from "../release/compat.ts";
import { type HostRelease, parseExtensionRelease, readHostReleaseUnder } from "../release/os-release.ts";
import type { ActiveLink, LinkState } from "../store/link.ts";
import type { PersistedState, StateStore } from "../store/state.ts";
import type { ImageStore, StoredImage } from "../store/store.ts";
import type { Sysext } from "../sysext/sysext.ts";

export interface JudgedImage extends StoredImage {
  /** Whether its extension-release matches the host this observation is for, and why not. */
  compatible: boolean;
  reasons: string[];
}

/** One extension of the set (Kata, or a companion such as cloud-hypervisor) as found on the host. */
export interface MemberView {
  name: string;
  link: LinkState;
  images: JudgedImage[];
  merged: boolean;
}

export interface Observed {
  host: HostRelease;
  arch: string;
  /** Every member, Kata (the primary) first: primaryOf() reads it. */
  members: [MemberView, ...MemberView[]];
  sandboxesRunning: number;
  state: PersistedState;
  /** A state file moved aside as unusable (state.ts), which the operator has not looked at yet; null when none. */
  stateDamage: { movedTo: string; remedy: string } | null;
}

export interface ObserveDeps {
  paths: HostPaths;
  arch: string;
  store: ImageStore;
  /** The primary first. */
  members: readonly { name: string; link: ActiveLink }[];
  sysext: Sysext;
  /** state.json. */
  state: StateStore;
  /** How many Kata sandboxes run now (countKataSandboxes on a host). */
  sandboxes: () => Promise<number>;
}

/** Judges stored images against a host (the booted one, or an update's next release). */
export function judge(images: StoredImage[], host: HostRelease, name: string, arch: string): JudgedImage[] {
  return images.map((image) => {
    const decision = compatible(host, parseExtensionRelease(image.extensionRelease), { name, arch });
    return { ...image, compatible: decision.compatible, reasons: decision.reasons };
  });
}

export async function observe(deps: ObserveDeps): Promise<Observed> {
  const host = await readHostReleaseUnder(deps.paths.root);
  const [links, stored, merged, sandboxesRunning, [state, damage]] = await Promise.all([
    Promise.all(deps.members.map((m) => m.link.read())),
    deps.store.list(),
    deps.sysext.merged(),
    deps.sandboxes(),
    // In this order: reading may move an unusable file aside.
    deps.state.read().then(async (read) => [read, await deps.state.damage()] as const),
  ]);
  const members = deps.members.map((m, i) => ({
    name: m.name,
    link: links[i] ?? ({ kind: "absent" } as const),
    images: judge(
      stored.filter((image) => image.name === m.name),
      host,
      m.name,
      deps.arch,
    ),
    merged: merged.includes(m.name),
  }));
  const [primary, ...companions] = members;
  if (primary === undefined) throw new Error("observe: no members");
  return {
    host,
    arch: deps.arch,
    members: [primary, ...companions],
    sandboxesRunning,
    state,
    stateDamage: damage,
  };
}

/** Kata's own view: its link, images and merge. */
export function primaryOf(observed: Pick<Observed, "members">): MemberView {
  return observed.members[0];
}

const SHIM = "containerd-shim-kata-v2";

/**
 * Running Kata sandboxes: one containerd-shim-kata-v2 process each. Always the real /proc of this machine. Read
 * synchronously: /proc answers from memory, and a few hundred reads through the thread pool (open, stat, read,
 * close each) took ten times as long as these, on the boot's critical path. Only argv[0] is read, into one
 * buffer: open, read, close per process.
 */
export async function countKataSandboxes(proc = "/proc"): Promise<number> {
  let count = 0;
  const buffer = Buffer.allocUnsafe(4096);
  for (const pid of readOr(() => readdirSync(proc), [] as string[])) {
    if (!/^[0-9]+$/.test(pid)) continue;
    const argv0 = readOr(() => firstArgument(join(proc, pid, "cmdline"), buffer), "");
    if (basename(argv0) === SHIM) count++;
  }
  return count;
}

/** The text of `cmdline` up to its first NUL (argv[0]), read through `buffer`. */
function firstArgument(cmdline: string, buffer: Buffer): string {
  const fd = openSync(cmdline, "r");
  try {
    let text = "";
    for (;;) {
      const read = readSync(fd, buffer, 0, buffer.length, null);
      const end = buffer.subarray(0, read).indexOf(0);
      text += buffer.toString("latin1", 0, end === -1 ? read : end);
      if (end !== -1 || read === 0) return text;
    }
  } finally {
    closeSync(fd);
  }
}

/** A process that ends while we look, or a /proc we may not read, counts as no shim. */
function readOr<T>(read: () => T, fallback: T): T {
  try {
    return read();
  } catch {
    return fallback;
  }
}
