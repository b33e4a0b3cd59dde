// Taking over a host set up the sysext-bakery way: /etc/extensions/<name>.raw is a symlink into
// /opt/extensions/<name>/ (written by Butane, then moved by systemd-sysupdate's CurrentSymlink=), and a
// systemd-sysupdate timer keeps moving it. The first pass verifies that image against the source's SHA256SUMS,
// admits a copy into the store like any download (inspected, quarantined if bad), and points the link at the copy
// (the same bytes, so nothing merged changes); the switch that follows then records it as `previous`. Nothing
// under /opt/extensions is touched: kata-sysextd never deletes what it did not create. An image written straight
// to /etc/extensions/<name>.raw (a regular file) is taken over the same way, known by its digest in SHA256SUMS:
// the link replaces it only once its bytes are in the store, recorded as `previous`.
import { createReadStream } from "node:fs";
import { copyFile, lstat, readdir, readFile, stat } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { KataError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { Member, ReconcileEvent } from "../model.ts";
import type { HostPaths } from "../paths.ts";
import { parseManifest } from "../release/manifest.ts";
import { splitImageFileName } from "../release/names.ts";
import type { HostRelease } from "../release/os-release.ts";
import { sha256 } from "../sha256.ts";
import type { LinkState } from "../store/link.ts";
import type { ImageStore } from "../store/store.ts";
import { type AdmitDeps, fetchAndAdmit } from "./admit.ts";

/** A link kata-sysextd may take over: it names `<name>-<version>-<arch>.raw` outside the store. Pure. */
export function takeoverCandidate(
  link: LinkState,
  linkPath: string,
  name: string,
  arch: string,
  host: (path: string) => string,
): { path: string; file: string; version: string } | null {
  if (link.kind !== "foreign" || link.target === null) return null;
  // An absolute target is read under --root, as systemd-sysext reads it.
  const path = isAbsolute(link.target) ? host(link.target) : resolve(dirname(linkPath), link.target);
  const file = basename(path);
  const parsed = splitImageFileName(file, name, arch);
  return typeof parsed === "string" ? null : { path, file, version: parsed.version };
}

/** The systemd-sysupdate timers enabled in /etc that update `name`, each with how to stop it. */
export async function sysupdateTimers(paths: HostPaths, name: string): Promise<string[]> {
  const wants = paths.host("/etc/systemd/system/timers.target.wants");
  const enabled = async (unit: string) =>
    lstat(join(wants, unit)).then(
      () => true,
      () => false,
    );
  const found: string[] = [];
  if (await enabled(`systemd-sysupdate-${name}.timer`)) {
    found.push(`systemd-sysupdate-${name}.timer (systemctl disable --now systemd-sysupdate-${name}.timer)`);
  }
  if (await enabled("systemd-sysupdate.timer")) {
    // The bakery's way: the generic timer, and a drop-in that runs `systemd-sysupdate -C <name> update`.
    const dropins = paths.host("/etc/systemd/system/systemd-sysupdate.service.d");
    const mine: string[] = [];
    for (const entry of await readdir(dropins).catch(() => [] as string[])) {
      const text = await readFile(join(dropins, entry), "utf8").catch(() => "");
      if (new RegExp(`-C\\s+${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(\\s|$)`, "m").test(text)) {
        mine.push(`/etc/systemd/system/systemd-sysupdate.service.d/${entry}`);
      }
    }
    const transfer = await stat(paths.host(`/etc/sysupdate.${name}.d`)).then(
      () => true,
      () => false,
    );
    if (mine.length > 0 || transfer) {
      const how =
        mine.length > 0
          ? `remove ${mine.join(", ")} and run systemctl daemon-reload, or, if it updates nothing else, systemctl disable --now systemd-sysupdate.timer`
          : "systemctl disable --now systemd-sysupdate.timer";
      found.push(`systemd-sysupdate.timer, which updates ${name} through /etc/sysupdate.${name}.d (${how})`);
    }
  }
  return found;
}

async function sha256Of(path: string): Promise<string> {
  const hash = sha256();
  // node:stream/promises loads when an image is taken over, not with every pass.
  await process.getBuiltinModule("node:stream/promises").pipeline(createReadStream(path), hash);
  return hash.digest("hex");
}

/**
 * Takes over a member's bakery-style link; returns whether the link moved. Throws when the image there cannot be
 * verified: the link is left as it is, and the error says what to do.
 */
export async function takeOver(
  deps: AdmitDeps & { paths: HostPaths; log: Logger; store: ImageStore },
  member: Member,
  link: LinkState,
  host: HostRelease,
  emit: (event: ReconcileEvent) => void,
): Promise<boolean> {
  const regular = link.kind === "foreign" && link.target === null;
  const named = takeoverCandidate(link, member.link.path, member.name, deps.arch, deps.paths.host);
  const path = regular ? member.link.path : named?.path;
  if (path === undefined) return false;
  const st = await stat(path).catch(() => null);
  if (st === null || !st.isFile()) return false;
  const entries = parseManifest((await member.source.manifest()).text).entries;
  const digest = await sha256Of(path);
  // A regular file's name says nothing of its version: SHA256SUMS, by its digest, does.
  let found = named;
  for (const entry of regular ? entries.filter((e) => e.sha256 === digest) : []) {
    const image = splitImageFileName(entry.file, member.name, deps.arch);
    if (typeof image !== "string") found ??= { path, file: entry.file, version: image.version };
  }
  if (found === null) {
    throw new KataError(
      "activation-failed",
      `${member.link.path} is a regular file the source's SHA256SUMS does not list: it cannot be verified, so it is not replaced`,
      {
        remedy: `move ${member.link.path} away (kata-sysextd then links a verified image), or point [source] at the release it came from`,
      },
    );
  }
  const listed = entries.find((e) => e.file === found.file);
  if (listed === undefined || listed.sha256 !== digest) {
    throw new KataError(
      "activation-failed",
      `${member.link.path} names ${found.path}, which ${listed === undefined ? "the source's SHA256SUMS does not list" : "does not match its SHA256SUMS line"}: it cannot be verified, so it is not taken over`,
      {
        remedy: `remove ${member.link.path} (kata-sysextd then links a verified image), or point [source] at the release it came from`,
      },
    );
  }
  if ((await deps.store.get(found.file)) === null) {
    // A download from the local file: copied and hashed like any other, then inspected and admitted.
    const local = {
      trust: member.source.trust,
      download: async (file: string, sha256: string, into: string) => {
        const dest = join(into, file);
        await copyFile(found.path, dest);
        const copied = await sha256Of(dest);
        if (copied !== sha256) {
          throw new KataError("digest-mismatch", `${found.path} changed while it was copied`);
        }
        return { path: dest, sha256: copied, bytes: st.size };
      },
    };
    await fetchAndAdmit(deps, { name: member.name, source: local }, { ...found, sha256: digest }, host, emit);
  }
  await member.link.point(found.file);
  deps.log.notice(
    regular
      ? `took over ${member.link.path}, a regular file: verified against SHA256SUMS as ${found.file} and kept in the store, which the link now points into`
      : `took over ${member.link.path} from ${found.path} (the sysext-bakery's layout): verified against SHA256SUMS and kept in the store; ${dirname(found.path)} is left as it is`,
    { KATA_SYSEXT_NAME: member.name, KATA_SYSEXT_VERSION: found.version },
  );
  for (const timer of await sysupdateTimers(deps.paths, member.name)) {
    deps.log.warning(
      `${timer} is enabled and would fight kata-sysextd over ${member.link.path}, moving it back into /opt/extensions`,
      { KATA_SYSEXT_NAME: member.name },
    );
  }
  return true;
}
