// The provisioning the build hands out with its image: config/butane.yaml with the image entry's `source` and
// `hash` set to the image just built, and the same compiled to Ignition. The converter covers the part of Butane
// (variant flatcar) that config/butane.yaml uses, as `butane --strict` compiles it; butane itself is not needed.
import { parse } from "yaml";
import { SYSEXT_NAME } from "./layout.ts";

export interface IgnitionFile {
  path: string;
  contents: { source: string; verification?: { hash: string } };
  mode?: number;
}
export interface IgnitionLink {
  path: string;
  hard?: boolean;
  target: string;
}
export interface IgnitionUnit {
  contents?: string;
  enabled?: boolean;
  name: string;
}
export interface IgnitionConfig {
  ignition: { version: string };
  storage?: { files?: IgnitionFile[]; links?: IgnitionLink[] };
  systemd?: { units?: IgnitionUnit[] };
}

/** Where Ignition installs the daemon's image. */
export const IMAGE_PATH = `/etc/extensions/${SYSEXT_NAME}.raw`;

/** Butane's flatcar variant versions and the Ignition spec version each one emits. */
export const FLATCAR_VARIANT: Readonly<Record<string, string>> = { "1.0.0": "3.3.0", "1.1.0": "3.4.0" };

type Yaml = Record<string, unknown>;

/**
 * Butane (variant flatcar) to Ignition, like `butane --strict` for storage.files (inline or source, with
 * verification), storage.links and systemd.units. Any key outside that subset is an error. Inline contents
 * become a plain percent-encoded data URL (butane may gzip them instead; Ignition reads both).
 */
export function butaneToIgnition(text: string): IgnitionConfig {
  // Butane reads YAML 1.1 (go-yaml): `mode: 0644` is octal there, decimal 644 in YAML 1.2.
  const doc = object(parse(text, { version: "1.1" }), "document");
  only(doc, ["variant", "version", "storage", "systemd"], "document");
  if (doc.variant !== "flatcar") throw new Error(`variant must be "flatcar", got ${String(doc.variant)}`);
  const spec = FLATCAR_VARIANT[String(doc.version)];
  if (spec === undefined) throw new Error(`unknown flatcar variant version ${String(doc.version)}`);
  const out: IgnitionConfig = { ignition: { version: spec } };
  if (doc.storage !== undefined) {
    const storage = object(doc.storage, "storage");
    only(storage, ["files", "links"], "storage");
    out.storage = {};
    if (storage.files !== undefined) out.storage.files = list(storage.files, "storage.files").map(file);
    if (storage.links !== undefined) out.storage.links = list(storage.links, "storage.links").map(link);
  }
  if (doc.systemd !== undefined) {
    const systemd = object(doc.systemd, "systemd");
    only(systemd, ["units"], "systemd");
    out.systemd = { units: list(systemd.units ?? [], "systemd.units").map(unit) };
  }
  return out;
}

/**
 * The Butane text with the image entry (`path: /etc/extensions/kata-sysextd.raw`) fetching `url` and verifying
 * `sha256`; everything else, comments included, as it was. Throws when the text has no such entry.
 */
export function withImage(butane: string, image: { url: string; sha256: string }): string {
  if (!/^[0-9a-f]{64}$/.test(image.sha256)) throw new Error(`sha256 must be 64 hex digits, got "${image.sha256}"`);
  const lines = butane.split("\n");
  const start = lines.findIndex((l) => new RegExp(`^\\s*- path: ${IMAGE_PATH}\\s*$`).test(l));
  if (start < 0) throw new Error(`no storage.files entry with path ${IMAGE_PATH}`);
  const indent = (lines[start] ?? "").indexOf("-");
  let source = false;
  let hash = false;
  for (let i = start + 1; i < lines.length; i++) {
    const line = lines[i] ?? "";
    // The entry ends at the next list item of the same level, or at anything less indented.
    if (line.trim() !== "" && !line.trim().startsWith("#") && line.search(/\S/) <= indent) break;
    if (/^\s*source: /.test(line)) {
      lines[i] = line.replace(/source: .*$/, `source: ${image.url}`);
      source = true;
    } else if (/^\s*hash: /.test(line)) {
      lines[i] = line.replace(/hash: .*$/, `hash: sha256-${image.sha256}`);
      hash = true;
    }
  }
  if (!source || !hash) throw new Error(`the ${IMAGE_PATH} entry needs contents.source and verification.hash`);
  return lines.join("\n");
}

/** The directory URL the Butane text fetches the image from (its `source` without the file name). */
export function imageBaseUrl(butane: string): string {
  const file = butaneToIgnition(butane).storage?.files?.find((f) => f.path === IMAGE_PATH);
  if (file === undefined) throw new Error(`no storage.files entry with path ${IMAGE_PATH}`);
  return file.contents.source.slice(0, file.contents.source.lastIndexOf("/") + 1);
}

function file(value: unknown, i: number): IgnitionFile {
  const where = `storage.files[${i}]`;
  const f = object(value, where);
  only(f, ["path", "mode", "contents"], where);
  const c = object(f.contents, `${where}.contents`);
  only(c, ["inline", "source", "verification"], `${where}.contents`);
  if ((c.inline === undefined) === (c.source === undefined)) throw new Error(`${where}: exactly one of inline, source`);
  const contents: IgnitionFile["contents"] = {
    source: c.inline !== undefined ? `data:,${percentEncode(String(c.inline))}` : String(c.source),
  };
  if (c.verification !== undefined) {
    const v = object(c.verification, `${where}.contents.verification`);
    only(v, ["hash"], `${where}.contents.verification`);
    contents.verification = { hash: String(v.hash) };
  }
  const out: IgnitionFile = { path: String(f.path), contents };
  if (f.mode !== undefined) out.mode = Number(f.mode);
  return out;
}

function link(value: unknown, i: number): IgnitionLink {
  const where = `storage.links[${i}]`;
  const l = object(value, where);
  only(l, ["path", "target", "hard"], where);
  return {
    path: String(l.path),
    ...(l.hard === undefined ? {} : { hard: Boolean(l.hard) }),
    target: String(l.target),
  };
}

function unit(value: unknown, i: number): IgnitionUnit {
  const where = `systemd.units[${i}]`;
  const u = object(value, where);
  only(u, ["name", "enabled", "contents"], where);
  const out: IgnitionUnit = { name: String(u.name) };
  if (u.contents !== undefined) out.contents = String(u.contents);
  if (u.enabled !== undefined) out.enabled = Boolean(u.enabled);
  return out;
}

/** RFC 2397 data URL payload: everything but RFC 3986 unreserved characters is %XX-escaped, byte by byte. */
export function percentEncode(text: string): string {
  return [...Buffer.from(text, "utf8")]
    .map((b) => {
      const ch = String.fromCharCode(b);
      return /[A-Za-z0-9\-._~]/.test(ch) ? ch : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
    })
    .join("");
}

/** The bytes of a `data:` URL (plain or ;base64). */
export function decodeDataUrl(url: string): Buffer {
  const match = /^data:([^,]*),(.*)$/s.exec(url);
  if (match === null) throw new Error(`not a data URL: ${url.slice(0, 40)}`);
  const [, meta = "", payload = ""] = match;
  return meta.endsWith(";base64") ? Buffer.from(payload, "base64") : Buffer.from(decodeURIComponent(payload), "utf8");
}

function object(value: unknown, where: string): Yaml {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`${where} must be a map`);
  return value as Yaml;
}

function list(value: unknown, where: string): unknown[] {
  if (!Array.isArray(value)) throw new Error(`${where} must be a list`);
  return value;
}

function only(value: Yaml, keys: string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (!keys.includes(key)) {
      throw new Error(`${where}: key "${key}" is outside the supported subset (${keys.join(", ")})`);
    }
  }
}
