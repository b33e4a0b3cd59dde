// The subset of Ignition spec 3.x that config/ignition.json uses, a Butane -> Ignition converter for that
// subset (no butane binary is available here), and what Ignition leaves in /etc, for the end-to-end test.
import { parse } from "yaml";
import type { EtcEntry } from "../../helpers/nspawn.ts";

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

/** Butane's flatcar variant versions and the Ignition spec each one emits. */
const FLATCAR_VARIANT: Record<string, string> = { "1.0.0": "3.3.0", "1.1.0": "3.4.0" };

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
  const out: IgnitionLink = { path: String(l.path), target: String(l.target) };
  if (l.hard !== undefined) out.hard = Boolean(l.hard);
  return { path: out.path, ...(out.hard === undefined ? {} : { hard: out.hard }), target: out.target };
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

/**
 * What Ignition leaves in /etc, as the nspawn harness's etcFiles: files (data URLs decoded; a remote source is
 * fetched by `fetchRemote`), links, and units in /etc/systemd/system with their [Install] WantedBy= links for
 * `enabled: true` (Ignition enables through a preset file that systemd applies on first boot; same result).
 */
export function etcFilesOf(
  config: IgnitionConfig,
  fetchRemote: (file: IgnitionFile) => Buffer,
): Record<string, EtcEntry> {
  const etc: Record<string, EtcEntry> = {};
  const underEtc = (path: string): string => {
    if (!path.startsWith("/etc/")) throw new Error(`${path}: only /etc is modelled`);
    return path.slice("/etc/".length);
  };
  for (const f of config.storage?.files ?? []) {
    const content = f.contents.source.startsWith("data:") ? decodeDataUrl(f.contents.source) : fetchRemote(f);
    etc[underEtc(f.path)] = { content, mode: f.mode ?? 0o644 };
  }
  for (const l of config.storage?.links ?? []) etc[underEtc(l.path)] = { symlink: l.target };
  for (const u of config.systemd?.units ?? []) {
    if (u.contents === undefined) continue;
    etc[`systemd/system/${u.name}`] = u.contents;
    if (!u.enabled) continue;
    for (const target of wantedBy(u.contents)) {
      etc[`systemd/system/${target}.wants/${u.name}`] = { symlink: `/etc/systemd/system/${u.name}` };
    }
  }
  return etc;
}

function wantedBy(unitText: string): string[] {
  const install = unitText.split(/^\[Install\]\s*$/m)[1]?.split(/^\[/m)[0] ?? "";
  return [...install.matchAll(/^WantedBy=(.+)$/gm)].flatMap((m) => (m[1] ?? "").trim().split(/\s+/));
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
    if (!keys.includes(key))
      throw new Error(`${where}: key "${key}" is outside the supported subset (${keys.join(", ")})`);
  }
}
