// The canary's image as an OCI image layout in one tar file (what `ctr images import` reads), built from a single
// static binary. Deterministic: the same binary gives the same bytes (sorted entries, owner 0, fixed time and
// modes, no timestamps in the JSON, an uncompressed layer so no compressor's version leaks in).
import { KataError } from "../errors.ts";
import { sha256 as sha256Hash } from "../sha256.ts";

const BLOCK = 512;

export interface TarEntry {
  /** Relative path; a directory ends in "/". */
  path: string;
  mode: number;
  content?: Buffer;
}

/** Where the program lives inside the image, and what the image runs. */
export const CANARY_ENTRYPOINT = "/canary";
/** The first line a passing canary prints (native/canary/canary.c); what follows is for the journal. */
export const CANARY_MARKER = "kata-sysextd-canary: ok";
export const CANARY_IMAGE_NAME = "localhost/kata-sysextd/canary";

const MEDIA = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar",
} as const;

const REF_ANNOTATION = "org.opencontainers.image.ref.name";

/** A POSIX ustar archive of `entries`, in the order given, every time 0 and every owner root. */
export function tarArchive(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const content = entry.content ?? Buffer.alloc(0);
    parts.push(tarHeader(entry, content.length));
    if (content.length > 0) {
      parts.push(content, Buffer.alloc((BLOCK - (content.length % BLOCK)) % BLOCK));
    }
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

function tarHeader(entry: TarEntry, size: number): Buffer {
  if (Buffer.byteLength(entry.path) > 100) throw new KataError("internal", `tar path too long: ${entry.path}`);
  const header = Buffer.alloc(BLOCK);
  const directory = entry.path.endsWith("/");
  const field = (offset: number, length: number, value: string): void => {
    header.write(value, offset, length, "ascii");
  };
  const octal = (offset: number, length: number, value: number): void => {
    field(offset, length - 1, value.toString(8).padStart(length - 1, "0"));
  };
  field(0, 100, entry.path);
  octal(100, 8, entry.mode);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, directory ? 0 : size);
  octal(136, 12, 0);
  field(148, 8, "        ");
  field(156, 1, directory ? "5" : "0");
  field(257, 6, "ustar\0");
  field(263, 2, "00");
  field(265, 32, "root");
  field(297, 32, "root");
  let sum = 0;
  for (const byte of header) sum += byte;
  field(148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return header;
}

export interface CanaryLayout {
  /** The OCI layout tarball's bytes. */
  tar: Buffer;
  /** The image reference it imports as ("localhost/kata-sysextd/canary:<12 hex of the manifest digest>"). */
  ref: string;
  manifestDigest: string;
}

const sha256 = (bytes: Buffer): string => `sha256:${sha256Hash().update(bytes).digest("hex")}`;
const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

/**
 * The image: one layer holding `program` at /canary, run as its entrypoint. The tag is the manifest's digest, so a
 * daemon that ships another canary imports it instead of running the one an older daemon left in containerd.
 */
export function canaryLayout(program: Buffer, arch = "amd64"): CanaryLayout {
  const layer = tarArchive([{ path: CANARY_ENTRYPOINT.slice(1), mode: 0o755, content: program }]);
  const config = json({
    architecture: arch,
    os: "linux",
    config: { Entrypoint: [CANARY_ENTRYPOINT], WorkingDir: "/" },
    rootfs: { type: "layers", diff_ids: [sha256(layer)] },
  });
  const descriptor = (mediaType: string, bytes: Buffer) => ({ mediaType, digest: sha256(bytes), size: bytes.length });
  const manifest = json({
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: descriptor(MEDIA.config, config),
    layers: [descriptor(MEDIA.layer, layer)],
  });
  const manifestDigest = sha256(manifest);
  const ref = `${CANARY_IMAGE_NAME}:${manifestDigest.slice("sha256:".length, "sha256:".length + 12)}`;
  const index = json({
    schemaVersion: 2,
    mediaType: MEDIA.index,
    manifests: [
      {
        ...descriptor(MEDIA.manifest, manifest),
        platform: { architecture: arch, os: "linux" },
        annotations: { [REF_ANNOTATION]: ref },
      },
    ],
  });
  const blobs = [config, layer, manifest]
    .map((bytes) => ({ path: `blobs/sha256/${sha256(bytes).slice("sha256:".length)}`, mode: 0o644, content: bytes }))
    .sort((a, b) => (a.path < b.path ? -1 : 1));
  const tar = tarArchive([
    { path: "blobs/", mode: 0o755 },
    { path: "blobs/sha256/", mode: 0o755 },
    ...blobs,
    { path: "index.json", mode: 0o644, content: index },
    { path: "oci-layout", mode: 0o644, content: json({ imageLayoutVersion: "1.0.0" }) },
  ]);
  return { tar, ref, manifestDigest };
}

/** The files of a ustar archive by path (regular files only): enough to read back our own layouts. */
export function tarFiles(tar: Buffer): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (let offset = 0; offset + BLOCK <= tar.length; ) {
    const header = tar.subarray(offset, offset + BLOCK);
    if (header.every((b) => b === 0)) break;
    const text = (start: number, length: number) =>
      header
        .subarray(start, start + length)
        .toString("ascii")
        .replace(/\0.*$/s, "");
    const size = Number.parseInt(text(124, 12).trim() || "0", 8);
    const prefix = text(345, 155);
    const name = prefix === "" ? text(0, 100) : `${prefix}/${text(0, 100)}`;
    const type = text(156, 1);
    if (Number.isNaN(size)) throw new KataError("internal", `not a tar archive (bad size at offset ${offset})`);
    if (type === "0" || type === "") files.set(name, tar.subarray(offset + BLOCK, offset + BLOCK + size));
    offset += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
  }
  return files;
}

/** The reference an OCI layout tarball imports as (its index's ref.name annotation); a clear error otherwise. */
export function layoutRef(tar: Buffer, file: string): string {
  const index = tarFiles(tar).get("index.json");
  let ref: unknown;
  try {
    const parsed = JSON.parse(index?.toString("utf8") ?? "null") as {
      manifests?: { annotations?: Record<string, unknown> }[];
    } | null;
    ref = parsed?.manifests?.[0]?.annotations?.[REF_ANNOTATION];
  } catch {
    ref = undefined;
  }
  if (typeof ref !== "string" || ref === "") {
    throw new KataError("canary-failed", `${file} is not an OCI image layout with a named image (index.json)`, {
      remedy: "reinstall kata-sysextd's system extension; the canary image ships inside it",
    });
  }
  return ref;
}
