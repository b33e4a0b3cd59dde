// What every end-to-end test of the daemon under real systemd needs, in one place: where the checkout appears
// in the container, a Flatcar /usr for it, and the project's own units installed to run from the checkout.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, realpathSync } from "node:fs";
import { join, relative } from "node:path";
import { writeOsRelease } from "./images.ts";
import type { Container, EtcEntry } from "./nspawn.ts";
import { PROJECT } from "./sandbox.ts";

/**
 * Where the checkout appears inside the container. Not its host path: a checkout under /tmp would be hidden from
 * the units by their PrivateTmp=yes.
 */
export const CHECKOUT = "/srv/kata-sysextd";

/** A host path inside the checkout as the container sees it; other paths (a system node) stay as they are. */
export function inContainer(hostPath: string): string {
  const rel = relative(PROJECT, hostPath);
  return rel.startsWith("..") ? hostPath : join(CHECKOUT, rel);
}

/**
 * The binds that show the checkout to the container at CHECKOUT, read-only. When its node_modules is a symlink
 * out of the checkout (a git worktree sharing another checkout's), that folder is bound at its own path too, so
 * the symlink, and the pinned node under it, resolve inside the container as on the host.
 */
export function checkoutBinds(): { host: string; container: string; readOnly: true }[] {
  const binds: { host: string; container: string; readOnly: true }[] = [
    { host: PROJECT, container: CHECKOUT, readOnly: true },
  ];
  const modules = join(PROJECT, "node_modules");
  const real = existsSync(modules) ? realpathSync(modules) : modules;
  if (relative(PROJECT, real).startsWith("..")) binds.push({ host: real, container: real, readOnly: true });
  return binds;
}

/** The pinned node the tests run under, as the container sees it. */
export const CONTAINER_NODE = inContainer(process.execPath);

/**
 * Mounts, under `workDir`, the container's /usr: the machine's /usr with a Flatcar os-release (and the journal
 * catalog) layered on top. Not a bind over /usr/lib/os-release: systemd-sysext's overlay takes the /usr mount as
 * its lower layer and would hide a file bound below it, so after the first merge Debian's os-release would show
 * again. Returns the mount point; unmount it with `unmountUsr`.
 */
export function flatcarUsr(workDir: string, versionId: string, name = `usr-${versionId}`): string {
  const layer = join(workDir, `os-${versionId}`);
  if (!existsSync(layer)) {
    writeOsRelease(layer, versionId);
    mkdirSync(join(layer, "usr/lib/systemd/catalog"), { recursive: true });
    execFileSync("cp", [join(PROJECT, "units/kata-sysextd.catalog"), join(layer, "usr/lib/systemd/catalog/")]);
  }
  const target = join(workDir, name);
  mkdirSync(target, { recursive: true });
  execFileSync("mount", ["-t", "overlay", "overlay", "-o", `ro,lowerdir=${join(layer, "usr")}:/usr`, target]);
  return target;
}

export function unmountUsr(target: string): void {
  try {
    execFileSync("umount", ["-l", target], { stdio: "ignore" });
  } catch {
    // never mounted, or already gone: nothing left to undo
  }
}

/**
 * /etc files installing units/<unit> unchanged, each with a drop-in that only swaps ExecStart for the checkout's
 * node and bin/kata-sysextd.js (with `args`), and enabled in multi-user.target.
 */
export function projectUnits(units: Record<string, string>): Record<string, EtcEntry> {
  const files: Record<string, EtcEntry> = {};
  for (const [unit, args] of Object.entries(units)) {
    files[`systemd/system/${unit}`] = readFileSync(join(PROJECT, "units", unit), "utf8");
    files[`systemd/system/${unit}.d/10-e2e-checkout.conf`] =
      `[Service]\nExecStart=\nExecStart=${CONTAINER_NODE} ${CHECKOUT}/bin/kata-sysextd.js${args}\n`;
    files[`systemd/system/multi-user.target.wants/${unit}`] = { symlink: `/etc/systemd/system/${unit}` };
  }
  return files;
}

/**
 * /status of the daemon in a container, read with curl inside it, and polled until a condition holds. The
 * container is a getter because a test that reboots gets a new one.
 */
export function statusIn<T>(container: () => Container, port: () => number, unit: string, timeoutMs = 60_000) {
  const status = async (): Promise<T> =>
    JSON.parse(await container().check(["curl", "-sf", `http://127.0.0.1:${port()}/status`])) as T;
  /** Polls /status until `done` holds; the error shows the last document and the unit's journal. */
  const statusUntil = async (done: (doc: T) => boolean, ms = timeoutMs): Promise<T> => {
    const deadline = Date.now() + ms;
    let last: T | null = null;
    while (Date.now() < deadline) {
      last = await status().catch(() => null);
      if (last !== null && done(last)) return last;
      await new Promise((r) => setTimeout(r, 200));
    }
    const journal = await container().exec(["journalctl", "-u", unit, "-n", "40", "--no-pager"]);
    throw new Error(`/status never got there; last: ${JSON.stringify(last)}\n${journal.stdout}`);
  };
  return { status, statusUntil };
}

/** Not in the middle of something: what the last pass and preflight concluded. */
export const settled = (doc: { state: string }): boolean => doc.state === "idle" || doc.state === "degraded";

/**
 * What the preflight looks for in a Kata image (a Cloud Hypervisor configuration and the files it names), so the
 * activation's health stage judges a kata-like image, not an empty one. A companion may ship its own
 * /usr/bin/cloud-hypervisor beside it.
 */
export function kataPayload(version: string): Record<string, string | { content: string; mode: number }> {
  const script = (text: string) => ({ content: `#!/bin/sh\n${text}\n`, mode: 0o755 });
  return {
    "opt/kata/share/defaults/kata-containers/configuration-clh.toml": [
      "[hypervisor.clh]",
      'path = "/opt/kata/bin/cloud-hypervisor"',
      'kernel = "/opt/kata/share/kata-containers/vmlinux.container"',
      'image = "/opt/kata/share/kata-containers/kata-containers.img"',
      'shared_fs = "virtio-fs"',
      'virtio_fs_daemon = "/opt/kata/libexec/virtiofsd"',
      "",
    ].join("\n"),
    "opt/kata/bin/cloud-hypervisor": script(`echo "cloud-hypervisor v41.0.0 (kata ${version})"`),
    "opt/kata/libexec/virtiofsd": script('echo "virtiofsd 1.12.0"'),
    "opt/kata/share/kata-containers/vmlinux.container": `kata-like guest kernel ${version}\n`,
    "opt/kata/share/kata-containers/kata-containers.img": `kata-like guest image ${version}\n`,
  };
}
