// Builds kata-like system extension images for tests and the demo: a real squashfs (mksquashfs) or a plain
// directory, laid out like the sysext-bakery's kata-containers image.
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export interface ImageSpec {
  name?: string;
  version: string;
  /** Lines of usr/lib/extension-release.d/extension-release.<name>; null to leave the file out. */
  extensionRelease?: string | null;
  /** File name of the release file, when a test wants it not to match the image name. */
  releaseFileName?: string;
  /** Extra files: path inside the image -> contents (string), {content, mode, xattrs}, a symlink or a device. */
  files?: Record<string, FileSpec>;
  /** mksquashfs -comp; default gzip, as the sysext-bakery builds. */
  compressor?: "gzip" | "zstd" | "xz";
  /** The file system; squashfs unless said (erofs with mkfs.erofs, as some publishers build theirs). */
  format?: "squashfs" | "erofs";
}

export type FileSpec =
  | string
  | { content: string | Buffer; mode: number; xattrs?: Record<string, string> }
  | { symlink: string }
  /** A device node made with mknod (needs root), e.g. {device: "c", major: 1, minor: 3, mode: 0o666}. */
  | { device: "c" | "b"; major: number; minor: number; mode: number };

export const DEFAULT_RELEASE = "ID=_any\nARCHITECTURE=x86-64\nEXTENSION_RELOAD_MANAGER=1\n";

/**
 * A cloud-hypervisor companion image as the sysext-bakery publishes one: its own extension-release (any host) and
 * an executable /usr/bin/cloud-hypervisor that prints its version.
 */
export function cloudHypervisorImage(version: string, out: string): string {
  return buildImage(
    {
      name: "cloud-hypervisor",
      version,
      extensionRelease: "ID=_any\nARCHITECTURE=x86-64\n",
      files: {
        "usr/bin/cloud-hypervisor": { content: `#!/bin/sh\necho "cloud-hypervisor ${version}"\n`, mode: 0o755 },
      },
    },
    out,
  );
}

/** An extension-release for one Flatcar release, as Flatcar's own extensions are (VERSION_ID, no SYSEXT_LEVEL). */
export function flatcarRelease(versionId: string): string {
  return `ID=flatcar\nVERSION_ID=${versionId}\nARCHITECTURE=x86-64\n`;
}

/** Lays the tree out in a new directory and returns it. */
export function buildTree(spec: ImageSpec, into?: string): string {
  const name = spec.name ?? "kata-containers";
  const dir = into ?? mkdtempSync(join(tmpdir(), "kata-tree-"));
  const release = spec.extensionRelease === undefined ? DEFAULT_RELEASE : spec.extensionRelease;
  // Kata's own payload only for the Kata image: a companion (e.g. cloud-hypervisor) brings just its files.
  const kataPayload: Record<string, FileSpec> =
    name === "kata-containers"
      ? {
          "opt/kata/bin/containerd-shim-kata-v2": {
            content: `#!/bin/sh\necho "kata-shim ${spec.version}"\n`,
            mode: 0o755,
          },
          "opt/kata/share/defaults/kata-containers/configuration-clh.toml":
            '[hypervisor.clh]\npath = "/opt/kata/bin/cloud-hypervisor"\n',
        }
      : {};
  const files: Record<string, FileSpec> = {
    [`usr/share/${name}/VERSION`]: `${spec.version}\n`,
    ...kataPayload,
    ...spec.files,
  };
  if (release !== null) {
    files[`usr/lib/extension-release.d/${spec.releaseFileName ?? `extension-release.${name}`}`] = release;
  }
  for (const [path, value] of Object.entries(files)) {
    const full = join(dir, path);
    mkdirSync(dirname(full), { recursive: true });
    if (typeof value !== "string" && "symlink" in value) {
      symlinkSync(value.symlink, full);
      continue;
    }
    if (typeof value !== "string" && "device" in value) {
      execFileSync("mknod", ["-m", value.mode.toString(8), full, value.device, `${value.major}`, `${value.minor}`]);
      continue;
    }
    const { content, mode, xattrs } = typeof value === "string" ? { content: value, mode: 0o644, xattrs: {} } : value;
    writeFileSync(full, content);
    chmodSync(full, mode);
    for (const [name, v] of Object.entries(xattrs ?? {})) execFileSync("setfattr", ["-n", name, "-v", v, full]);
  }
  return dir;
}

/** A squashfs image at `out` (reproducible: fixed mtime, all files owned by root). */
export function buildImage(spec: ImageSpec, out: string): string {
  const tree = buildTree(spec);
  try {
    mkdirSync(dirname(out), { recursive: true });
    if (spec.format === "erofs") {
      execFileSync("mkfs.erofs", ["--all-root", "-T", "0", out, tree], { stdio: ["ignore", "ignore", "pipe"] });
      return out;
    }
    const comp = ["-comp", spec.compressor ?? "gzip"];
    execFileSync(
      "mksquashfs",
      [tree, out, ...comp, "-all-root", "-noappend", "-quiet", "-mkfs-time", "0", "-all-time", "0"],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
  } finally {
    rmSync(tree, { recursive: true, force: true });
  }
  return out;
}

/** Writes a minimal Flatcar os-release into `root`/usr/lib/os-release. */
export function writeOsRelease(root: string, versionId = "4593.2.5", extra = ""): void {
  mkdirSync(join(root, "usr/lib"), { recursive: true });
  writeFileSync(
    join(root, "usr/lib/os-release"),
    `NAME="Flatcar Container Linux by Kinvolk"\nID=flatcar\nID_LIKE=coreos\nVERSION=${versionId}\nVERSION_ID=${versionId}\nBUILD_ID=\nSYSEXT_LEVEL=1.0\nFLATCAR_BOARD=amd64-usr\n${extra}`,
  );
}
