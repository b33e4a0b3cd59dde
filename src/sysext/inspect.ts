// Looks inside an image before it may be linked, deciding as systemd-sysext 252 will when it merges it: which
// release file it judges the image by, whether the image may ship what it ships. Reads squashfs with unsquashfs;
// nothing is mounted. Every rule here is checked against the real 252 binary in
// test/integration/release/sysext-differential.test.ts. An erofs image is refused: no tool on the host lists its
// modes and xattrs without mounting it, so its device nodes, setuid files and capabilities could not be checked.
import { mkdtemp, open, rm } from "node:fs/promises";
import { dirname, join, posix } from "node:path";
import { KataError } from "../errors.ts";
import { isOutputTooLarge, run } from "../exec.ts";
import { chase } from "../paths.ts";
import { helperPath } from "../preflight/helpers.ts";
import { readXattrs } from "../preflight/xattr.ts";
import { releaseText } from "../release/os-release.ts";
import { imageUnreadable, squashfsXattrNames } from "./squashfs-xattrs.ts";

export interface ImageContents {
  /** Paths inside the image, without a leading slash; everything but directories. */
  files: string[];
  /** The text of the release file systemd-sysext judges the image by, or null if it finds none. */
  extensionRelease: string | null;
  /** Where that text came from inside the image, when not from extension-release.<name> itself. */
  releaseFrom: string | null;
  /** Other extension-release files the image carries (a wrong name inside). */
  otherReleaseFiles: string[];
  /** What the image must not ship, one sentence each, naming the paths; empty when nothing. */
  refused: string[];
}

export interface InspectLimits {
  /** Bytes of the tool's file listing; an image listing more is refused (a squashfs can hold millions of files). */
  maxListingBytes?: number;
  /** Bytes of the release file. */
  maxReleaseBytes?: number;
}

const RELEASE_DIR = "usr/lib/extension-release.d/";
const ALLOWED_TOP = new Set(["usr", "opt"]);
export const MAX_LISTING_BYTES = 16 * 1024 * 1024;
export const MAX_RELEASE_BYTES = 1024 * 1024;
/** The xattr that grants a file's capabilities on exec, as setuid grants root (capabilities(7)). */
const CAPABILITY = "security.capability";
/** How many offending paths a reason names before it says "and N more". */
const NAMED_PATHS = 10;

interface Entry {
  /** "-" file, "d" directory, "l" symlink, "c"/"b" device, "p" fifo, "s" socket. */
  type: string;
  setuid: boolean;
  setgid: boolean;
  /** Symlink target, as stored. */
  target: string | null;
}

/** The image format by its magic, or null for anything else (a release file, a directory's file). */
export async function detectFormat(path: string): Promise<"squashfs" | "erofs" | null> {
  const handle = await open(path, "r");
  try {
    const buf = Buffer.alloc(1028);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    if (bytesRead >= 4 && buf.toString("latin1", 0, 4) === "hsqs") return "squashfs";
    if (bytesRead >= 1028 && buf.readUInt32LE(1024) === 0xe0f5e1e2) return "erofs";
    return null;
  } finally {
    await handle.close();
  }
}

// `unsquashfs -lls -d ""`: "crw-rw-rw- root/root 1,  3 2026-12-02 07:41 /usr/lib/x", "lrwxrwxrwx … /a -> b".
const LLS_LINE = /^([-dlcbps][-rwxsStT]{9})\s+\S+\s+(?:\d+|\d+,\s*\d+)\s+\d{4}-\d\d-\d\d \d\d:\d\d (.*)$/;

async function listSquashfs(path: string, limits: Required<InspectLimits>): Promise<Map<string, Entry>> {
  const stdout = await listingOf(path, "unsquashfs", ["-lls", "-d", "", path], limits);
  const entries = new Map<string, Entry>();
  for (const line of stdout.split("\n")) {
    const m = LLS_LINE.exec(line);
    if (m === null) continue;
    const mode = m[1] ?? "";
    const type = mode[0] ?? "-";
    let name = m[2] ?? "";
    let target: string | null = null;
    if (type === "l") {
      const arrow = name.indexOf(" -> ");
      if (arrow >= 0) [name, target] = [name.slice(0, arrow), name.slice(arrow + 4)];
    }
    name = name.replace(/^\/+/, "");
    if (name === "") continue;
    const setuid = mode[3] === "s" || mode[3] === "S";
    const setgid = mode[6] === "s" || mode[6] === "S";
    entries.set(name, { type, setuid, setgid, target });
  }
  return entries;
}

/** The tool's listing; one too big to read is the image's fault (quarantined), not a reason to fetch it again. */
async function listingOf(path: string, tool: string, args: string[], limits: Required<InspectLimits>) {
  try {
    return unreadableUnless(path, await run(tool, args, { timeoutMs: 60_000, maxBufferBytes: limits.maxListingBytes }));
  } catch (err) {
    if (!isOutputTooLarge(err)) throw err;
    throw new KataError(
      "inspect-failed",
      `${path}: its file listing is larger than ${limits.maxListingBytes} bytes, too big to inspect`,
      { remedy: "a Kata extension lists a few thousand files; the published image is not one" },
    );
  }
}

// The cat helpers return bytes: the release file is judged by releaseText(), as systemd judges it, not repaired.
async function catFile(path: string, file: string, limits: Required<InspectLimits>) {
  try {
    const result = await run("unsquashfs", ["-cat", path, file], {
      timeoutMs: 30_000,
      stdout: "bytes",
      maxBufferBytes: limits.maxReleaseBytes,
    });
    return result.exitCode === 0 ? result.stdout : null;
  } catch (err) {
    if (!isOutputTooLarge(err)) throw err;
    throw new KataError(
      "inspect-failed",
      `${path}:/${file} is larger than ${limits.maxReleaseBytes} bytes, too big for a release file`,
      { remedy: "the image's extension-release must be a few KEY=value lines; republish the image" },
    );
  }
}

/**
 * The tool ran and could not read the image: the image's fault (inspect-failed, so it is quarantined). A tool that
 * is missing or cannot run is ours, and stays a subprocess-failed error from run().
 */
function unreadableUnless(path: string, result: { stdout: string; stderr: string; exitCode: number }): string {
  if (result.exitCode === 0) return result.stdout;
  throw imageUnreadable(path, result.stderr.trim().split("\n")[0] ?? "");
}

/**
 * Follows symlinks inside the image as systemd's chase_symlinks() does under the image's root (paths.ts chase):
 * an absolute target restarts at the image root and ".." stops at it. Null when the path leads nowhere in it.
 */
export async function chaseInImage(
  entries: ReadonlyMap<string, Pick<Entry, "type" | "target">>,
  path: string,
): Promise<string | null> {
  const missing = Object.assign(new Error(`${path}: not in the image`), { code: "ENOENT" });
  try {
    const parts = await chase(path, (sofar) => {
      const entry = entries.get(sofar.join("/"));
      if (entry === undefined || (entry.type === "l" && entry.target === null)) throw missing;
      return { link: entry.type === "l" ? entry.target : null };
    });
    return parts.join("/");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ELOOP") {
      return null;
    }
    throw err;
  }
}

/** systemd's parse_boolean() false spellings: only a value that parses as false relaxes the name rule. */
const FALSE_VALUES = new Set(["0", "no", "n", "false", "f", "off"]);

/**
 * Release files under another name that systemd-sysext 252 takes instead of extension-release.<name>: regular
 * files (not symlinks) whose xattr user.extension-release.strict parses as false. Their xattrs are read from a
 * copy of just those files, extracted beside the image. Newer systemd (>= 254) takes the same files the same way.
 */
async function relaxedReleaseFiles(path: string, candidates: string[]): Promise<string[]> {
  if (candidates.length === 0) return [];
  const helper = await helperPath("xattrGet");
  if (helper === null) {
    throw new KataError("subprocess-failed", "the xattr-get helper is not built: release files cannot be judged", {
      remedy: "run `npm ci` (scripts/build-helpers.mjs builds it)",
    });
  }
  const scratch = await mkdtemp(join(dirname(path), ".release-"));
  try {
    const extract = await run("unsquashfs", ["-q", "-n", "-user-xattrs", "-f", "-d", scratch, path, ...candidates], {
      timeoutMs: 30_000,
    });
    unreadableUnless(path, extract);
    const values = await readXattrs(
      helper,
      "user.extension-release.strict",
      candidates.map((f) => join(scratch, f)),
      10_000,
    );
    return candidates.filter((_, i) => {
      const value = values[i];
      return (
        value !== undefined && "value" in value && value.value !== null && FALSE_VALUES.has(value.value.toLowerCase())
      );
    });
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

export async function inspectImage(path: string, name: string, limitsIn: InspectLimits = {}): Promise<ImageContents> {
  const limits = { maxListingBytes: MAX_LISTING_BYTES, maxReleaseBytes: MAX_RELEASE_BYTES, ...limitsIn };
  const format = await detectFormat(path);
  if (format === null) {
    throw new KataError("inspect-failed", `${path} is neither a squashfs nor an erofs image`, {
      remedy: "publish the extension as a squashfs image (mksquashfs)",
    });
  }
  if (format === "erofs") {
    throw new KataError(
      "inspect-failed",
      `${path} is an erofs image, which kata-sysextd cannot check for device nodes, setuid files and file capabilities without mounting it`,
      { remedy: "publish the extension as a squashfs image (mksquashfs), as the sysext-bakery does" },
    );
  }
  const entries = await listSquashfs(path, limits);
  const files = [...entries].filter(([, e]) => e.type !== "d").map(([p]) => p);
  const releaseFile = `${RELEASE_DIR}extension-release.${name}`;
  const otherReleaseFiles = files.filter((f) => f.startsWith(RELEASE_DIR) && f !== releaseFile);

  // The file for this name, its symlinks followed inside the image (252 reads a relative or absolute link).
  let from = entries.has(releaseFile) ? await chaseInImage(entries, releaseFile) : null;
  if (from !== null && entries.get(from)?.type !== "-") from = null;
  const refused = refusedContents(entries);
  if ((await squashfsXattrNames(path, limits.maxListingBytes)).has(CAPABILITY)) {
    refused.push(
      "ships files with file capabilities (security.capability); systemd-sysext 252 would merge them with their privilege",
    );
  }
  if (from === null) {
    const plain = otherReleaseFiles.filter((f) => !f.slice(RELEASE_DIR.length).includes("/"));
    const relaxed = await relaxedReleaseFiles(
      path,
      plain.filter((f) => entries.get(f)?.type === "-" && posix.basename(f).startsWith("extension-release.")),
    );
    // 252 refuses to choose between two (ENOTUNIQ, "Name not unique"), and the whole merge fails.
    if (relaxed.length > 1) {
      refused.push(
        `more than one release file says user.extension-release.strict=false (${relaxed.map((f) => `/${f}`).join(", ")}); systemd-sysext refuses to choose`,
      );
    } else from = relaxed[0] ?? null;
  }
  const bytes = from === null ? null : await catFile(path, from, limits);
  const extensionRelease = bytes === null ? null : imageReleaseText(bytes, `${path}:/${from}`);
  return {
    files,
    extensionRelease,
    releaseFrom: from === releaseFile ? null : from,
    otherReleaseFiles,
    refused,
  };
}

/**
 * What the image must not ship. /usr/lib/os-release: 252 refuses such an image with an error that stops the
 * whole merge, every other extension with it. Device nodes and setuid/setgid files: 252 merges the overlay
 * without nodev and nosuid (newer systemd mounts extensions nodev, and nosuid unless asked otherwise), so a 0666
 * device node or a setuid-root binary under /usr would be live for every local user; we refuse them on every
 * systemd, so the same image behaves the same on every node. File capabilities (security.capability, checked in
 * inspectImage from the xattr table) are the same privilege by another name, and nosuid is what disarms them too.
 */
function refusedContents(entries: ReadonlyMap<string, Entry>): string[] {
  const refused: string[] = [];
  if (entries.has("usr/lib/os-release")) {
    refused.push(
      "ships /usr/lib/os-release; systemd-sysext refuses such an image, and with it every other extension of the merge",
    );
  }
  const named = (paths: string[]) =>
    paths
      .slice(0, NAMED_PATHS)
      .map((p) => `/${p}`)
      .join(", ") + (paths.length > NAMED_PATHS ? ` and ${paths.length - NAMED_PATHS} more` : "");
  const devices = [...entries].filter(([, e]) => e.type === "c" || e.type === "b").map(([p]) => p);
  if (devices.length > 0) {
    refused.push(`ships device nodes (${named(devices)}); systemd-sysext 252 would merge them usable by anyone`);
  }
  const privileged = [...entries].filter(([, e]) => e.type !== "d" && (e.setuid || e.setgid)).map(([p]) => p);
  if (privileged.length > 0) {
    refused.push(
      `ships setuid or setgid files (${named(privileged)}); systemd-sysext 252 would merge them with their privilege`,
    );
  }
  return refused;
}

/** A release file systemd-sysext would refuse makes the image unmergeable: the image's fault, so inspect-failed. */
function imageReleaseText(bytes: Buffer, where: string): string {
  try {
    return releaseText(bytes, where, "extension-release");
  } catch (err) {
    if (!(err instanceof KataError)) throw err;
    throw new KataError("inspect-failed", `${err.message}; systemd-sysext would not merge the image`, {
      remedy: "the image's extension-release must be plain UTF-8 KEY=value lines; republish the image",
      cause: err,
    });
  }
}

/** Problems with the payload's shape, each a sentence; empty when the image may be linked. */
export function payloadProblems(contents: ImageContents, name: string): string[] {
  const problems: string[] = [...contents.refused];
  const outside = [...new Set(contents.files.map((f) => f.split("/")[0] ?? ""))].filter((t) => !ALLOWED_TOP.has(t));
  if (outside.length > 0) {
    problems.push(`payload holds /${outside.join(", /")}; a system extension may only ship /usr and /opt`);
  }
  if (contents.extensionRelease === null) {
    const found = contents.otherReleaseFiles.length > 0 ? ` (found ${contents.otherReleaseFiles.join(", ")})` : "";
    problems.push(`image lacks ${RELEASE_DIR}extension-release.${name}${found}; systemd-sysext would not merge it`);
  }
  return problems;
}
