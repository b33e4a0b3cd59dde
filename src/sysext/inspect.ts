// Looks inside an image before it may be linked: its own extension-release file (the one systemd-sysext will
// judge it by), and its payload, which must only hold /usr and /opt. Reads squashfs with unsquashfs and
// other formats (erofs) with systemd-dissect; nothing is mounted.
import { open } from "node:fs/promises";
import { KataError } from "../errors.ts";
import { run } from "../exec.ts";
import { releaseText } from "../release/os-release.ts";

export interface ImageContents {
  format: "squashfs" | "erofs";
  /** Paths inside the image, without a leading slash, files and symlinks only. */
  files: string[];
  /** The text of usr/lib/extension-release.d/extension-release.<name>, or null if the image lacks it. */
  extensionRelease: string | null;
  /** Other extension-release files the image carries (a wrong name inside). */
  otherReleaseFiles: string[];
}

const RELEASE_DIR = "usr/lib/extension-release.d/";
const ALLOWED_TOP = new Set(["usr", "opt"]);

async function detectFormat(path: string): Promise<"squashfs" | "erofs" | null> {
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

async function listSquashfs(path: string): Promise<string[]> {
  const stdout = unreadableUnless(path, await run("unsquashfs", ["-lc", "-d", "", path], { timeoutMs: 60_000 }));
  return stdout
    .split("\n")
    .map((l) => l.replace(/^\/+/, ""))
    .filter((l) => l !== "");
}

// The cat helpers return bytes: the release file is judged by releaseText(), as systemd judges it, not repaired.
async function catSquashfs(path: string, file: string): Promise<Buffer | null> {
  const result = await run("unsquashfs", ["-cat", path, file], { timeoutMs: 30_000, stdout: "bytes" });
  return result.exitCode === 0 ? result.stdout : null;
}

async function listDissect(path: string): Promise<string[]> {
  const stdout = unreadableUnless(path, await run("systemd-dissect", ["--list", path], { timeoutMs: 60_000 }));
  return stdout
    .split("\n")
    .map((l) => l.replace(/^\/+/, ""))
    .filter((l) => l !== "" && !l.endsWith("/"));
}

async function catDissect(path: string, file: string): Promise<Buffer | null> {
  const result = await run("systemd-dissect", ["--copy-from", path, `/${file}`, "-"], {
    timeoutMs: 30_000,
    stdout: "bytes",
  });
  return result.exitCode === 0 ? result.stdout : null;
}

/**
 * The tool ran and could not read the image: the image's fault (inspect-failed, so it is quarantined). A tool that
 * is missing or cannot run is ours, and stays a subprocess-failed error from run().
 */
function unreadableUnless(path: string, result: { stdout: string; stderr: string; exitCode: number }): string {
  if (result.exitCode === 0) return result.stdout;
  throw new KataError("inspect-failed", `${path} cannot be read as an image: ${result.stderr.trim().split("\n")[0]}`, {
    remedy: "the published image is corrupt or truncated at the source; it matched SHA256SUMS, so republish both",
  });
}

export async function inspectImage(path: string, name: string): Promise<ImageContents> {
  const format = await detectFormat(path);
  if (format === null) {
    throw new KataError("inspect-failed", `${path} is neither a squashfs nor an erofs image`, {
      remedy: "publish the extension as a squashfs (mksquashfs) or erofs image",
    });
  }
  const list = format === "squashfs" ? listSquashfs : listDissect;
  const cat = format === "squashfs" ? catSquashfs : catDissect;
  const files = await list(path);
  const releaseFile = `${RELEASE_DIR}extension-release.${name}`;
  const otherReleaseFiles = files.filter((f) => f.startsWith(RELEASE_DIR) && f !== releaseFile);
  const bytes = files.includes(releaseFile) ? await cat(path, releaseFile) : null;
  const extensionRelease = bytes === null ? null : imageReleaseText(bytes, `${path}:/${releaseFile}`);
  return { format, files, extensionRelease, otherReleaseFiles };
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
  const problems: string[] = [];
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
