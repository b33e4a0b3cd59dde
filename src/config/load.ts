// Reads /etc/kata-sysextd/config.toml (under --root). A missing default file means the defaults; a file the
// operator named must exist; anything present is checked against the schema, and the first problem names the
// file, the line, the key and what was expected.
import { lstat } from "node:fs/promises";
import { parse, TomlError } from "smol-toml";
import { KataError } from "../errors.ts";
import { readSmallFile } from "../files.ts";
import {
  COMPANION_KEYS,
  CONSTRAINT_KEYS,
  type Companion,
  type Config,
  DEFAULTS,
  type Leaf,
  REQUIREMENT_KEYS,
  SECTIONS,
} from "./schema.ts";
import { parseTransfer } from "./sysupdate.ts";

type Table = Record<string, unknown>;
const isTable = (v: unknown): v is Table => typeof v === "object" && v !== null && !Array.isArray(v);

/** A configuration is a few KiB of TOML; a larger file is not one (or is /dev/zero). */
export const CONFIG_MAX_BYTES = 1024 * 1024;

export interface LoadedConfig {
  config: Config;
  /** No file at the default path: these are the defaults (worth saying once). */
  defaults: boolean;
  /** What the configuration holds that is accepted and not used (a transfer file's [Target]): said once. */
  notes: string[];
}

/**
 * `required`: the operator named the file (--config), so it must exist. Without it a missing file means the
 * defaults; a dangling symlink there is still an error (someone meant a file to be there).
 */
export async function loadConfig(
  file: string,
  options: { required?: boolean; host?: (path: string) => string } = {},
): Promise<LoadedConfig> {
  const read = await readSmallFile(file, CONFIG_MAX_BYTES);
  switch (read.kind) {
    case "ok":
      return withTransferFile(parseConfig(read.text, file), options.host ?? ((p) => p));
    case "missing": {
      const dangling = await lstat(file).then(
        (st) => st.isSymbolicLink(),
        () => false,
      );
      if (options.required === true || dangling) {
        const what = dangling ? "is a symlink to a file that does not exist" : "does not exist";
        throw new KataError("config-unreadable", `${file}: ${what}`, {
          remedy: options.required
            ? "create the file, or leave out --config to run on the defaults (or /etc/kata-sysextd/config.toml)"
            : "point the symlink at the configuration, or remove it to run on the defaults",
        });
      }
      return { config: structuredClone(DEFAULTS), defaults: true, notes: [] };
    }
    case "not-regular":
      throw new KataError("config-unreadable", `${file}: is ${read.what}, not a regular file; it is not read`, {
        remedy: "put the configuration in a regular file",
      });
    case "too-large":
      throw new KataError("config-unreadable", `${file}: is larger than ${read.maxBytes} bytes; it is not read`, {
        remedy: "a configuration is a few KiB of TOML: check that --config names the right file",
      });
    case "unreadable":
      throw new KataError("config-unreadable", `${file}: cannot read: ${read.message}`, {
        remedy: "make the file readable by root or remove it to use the defaults",
      });
  }
}

/** `[source] sysupdate`: url, name and verify come from the transfer file it names (under --root via `host`). */
async function withTransferFile(config: Config, host: (path: string) => string): Promise<LoadedConfig> {
  const named = config.source.sysupdate;
  if (named === null) return { config, defaults: false, notes: [] };
  const read = await readSmallFile(host(named), CONFIG_MAX_BYTES);
  if (read.kind !== "ok") {
    const why =
      read.kind === "missing"
        ? "does not exist"
        : read.kind === "not-regular"
          ? `is ${read.what}, not a regular file`
          : read.kind === "too-large"
            ? `is larger than ${read.maxBytes} bytes`
            : `cannot be read: ${read.message}`;
    throw new KataError("config-unreadable", `source.sysupdate: ${named} ${why}`, {
      remedy:
        "point [source] sysupdate at the transfer file (e.g. /etc/sysupdate.kata-containers.d/kata-containers.conf)",
    });
  }
  const transfer = parseTransfer(read.text, named);
  const source = { ...config.source, name: transfer.name, verify: transfer.verify, path: transfer.path };
  const checked = { ...config, source };
  checkCompanions(checked, "", named);
  return { config: checked, defaults: false, notes: transfer.notes };
}

export function parseConfig(text: string, file: string): Config {
  let doc: Table;
  try {
    doc = parse(text) as Table;
  } catch (err) {
    const where = err instanceof TomlError ? `${file}:${err.line}` : file;
    const what = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw invalid(`${where}: not valid TOML: ${what}`);
  }
  const config = structuredClone(DEFAULTS) as unknown as Record<string, Record<string, unknown>>;
  let companions: Partial<Record<keyof Companion, unknown>>[] = [];
  for (const [section, value] of Object.entries(doc)) {
    if (section === "companion") {
      companions = parseTables(
        value,
        COMPANION_KEYS,
        "companion",
        ["name", "versions"],
        at(text, file, section),
        "[[companion]]",
      );
      continue;
    }
    // Own names only: "constructor" or "toString" must not find Object.prototype's.
    const leaves = Object.hasOwn(SECTIONS, section) ? SECTIONS[section] : undefined;
    if (leaves === undefined) {
      throw invalid(
        `${at(text, file, section)}: unknown section "${section}"; expected one of ${known(SECTIONS)}, companion`,
      );
    }
    if (!isTable(value)) throw invalid(`${at(text, file, section)}: "${section}" must be a table ([${section}])`);
    const target = config[section] as Record<string, unknown>;
    for (const [key, raw] of Object.entries(value)) {
      if (section === "policy" && (key === "constraints" || key === "requires")) {
        const keys: Record<string, Leaf> = key === "constraints" ? CONSTRAINT_KEYS : REQUIREMENT_KEYS;
        target[key] = parseTables(raw, keys, `policy.${key}`, Object.keys(keys), at(text, file, key, section));
        continue;
      }
      const entry = Object.entries(leaves).find(([, leaf]) => leaf.toml === key);
      if (entry === undefined) {
        const names = Object.values(leaves).map((l) => l.toml);
        if (section === "policy") names.push("constraints", "requires");
        throw invalid(
          `${at(text, file, key, section)}: unknown key "${section}.${key}"; expected one of ${names.join(", ")}`,
        );
      }
      const [field, leaf] = entry;
      target[field] = checked(leaf, raw, `${section}.${key}`, at(text, file, key, section));
    }
  }
  const result = config as unknown as Config;
  const source = isTable(doc.source) ? doc.source : {};
  const both = ["url", "name", "verify"].filter((k) => Object.hasOwn(source, k));
  if (Object.hasOwn(source, "sysupdate") && both.length > 0) {
    throw invalid(
      `${at(text, file, both[0] ?? "", "source")}: source.${both.join(", source.")} and source.sysupdate exclude each other: the transfer file says where images come from`,
    );
  }
  result.companions = companions.map((c) => ({
    url: result.source.url,
    verify: result.source.verify,
    keyring: result.source.keyring,
    ...c,
  })) as unknown as Companion[];
  checkCompanions(result, text, file);
  // The canary proves the handler the registration gave containerd: on by default only when there is one.
  const health = doc.health;
  if (!isTable(health) || health.canary === undefined) result.health.canary = result.containerd.enabled;
  return result;
}

/** Cross-key rules: unique member names, and every requirement names a configured companion. */
function checkCompanions(config: Config, text: string, file: string): void {
  const names = [config.source.name];
  for (const c of config.companions) {
    if (names.includes(c.name)) {
      throw invalid(`${at(text, file, "companion")}: companion name "${c.name}" is used twice (or is [source] name)`);
    }
    names.push(c.name);
  }
  config.policy.requires.forEach((r, i) => {
    if (!config.companions.some((c) => c.name === r.companion)) {
      throw invalid(
        `${at(text, file, "requires", "policy")}: policy.requires[${i}].companion "${r.companion}" is not a [[companion]] name; configured: ${config.companions.map((c) => c.name).join(", ") || "none"}`,
      );
    }
  });
}

/** An array of tables checked against its keys; `where` is the "file:line" to blame. */
function parseTables<K extends string>(
  raw: unknown,
  keys: Record<K, Leaf>,
  key: string,
  required: readonly string[],
  where: string,
  shape = `an array of tables {${Object.keys(keys).join(", ")}}`,
): Partial<Record<K, unknown>>[] {
  if (!Array.isArray(raw)) throw invalid(`${where}: key "${key}" must be ${shape}`);
  return raw.map((item, i) => {
    const name = `${key}[${i}]`;
    if (!isTable(item)) throw invalid(`${where}: ${name} must be a table {${Object.keys(keys).join(", ")}}`);
    const out: Partial<Record<K, unknown>> = {};
    for (const [k, v] of Object.entries(item)) {
      const leaf = Object.hasOwn(keys, k) ? (keys as Record<string, Leaf>)[k] : undefined;
      if (leaf === undefined)
        throw invalid(`${where}: unknown key "${name}.${k}"; expected one of ${Object.keys(keys).join(", ")}`);
      out[k as K] = checked(leaf, v, `${name}.${k}`, where);
    }
    for (const k of required) {
      if (out[k as K] === undefined) {
        throw invalid(`${where}: ${name} is missing "${k}" (${(keys as Record<string, Leaf>)[k]?.expected ?? ""})`);
      }
    }
    return out;
  });
}

function checked(leaf: Leaf, raw: unknown, key: string, where: string): unknown {
  if (!leaf.check(raw)) {
    const why = leaf.why?.(raw) ?? null;
    const detail = why === null ? "" : ` (${why})`;
    throw invalid(`${where}: key "${key}" must be ${leaf.expected}, got ${shown(raw)}${detail}`);
  }
  return typeof raw === "bigint" ? Number(raw) : raw;
}

/** A value as the operator wrote it: TOML's inf and nan, which JSON would print as null. */
const shown = (v: unknown): string => {
  if (typeof v === "number" && !Number.isFinite(v)) return Number.isNaN(v) ? "nan" : v > 0 ? "inf" : "-inf";
  return JSON.stringify(typeof v === "bigint" ? Number(v) : v);
};
const known = (t: Record<string, unknown>): string => Object.keys(t).join(", ");
const invalid = (message: string): KataError =>
  new KataError("config-invalid", message, { remedy: "fix the configuration file and restart or reload the daemon" });

/**
 * Best effort "file:line" for a key, so the operator's editor jumps to it: the first header or assignment whose
 * key path (quoted parts, dotted keys and sub-tables too: `["source"]`, `[source.foo]`, `source.url =`) starts
 * with `section.key` (or `key` alone for a section).
 */
function at(text: string, file: string, key: string, section?: string): string {
  const wanted = section === undefined ? [key] : [section, key];
  const lines = text.split("\n");
  let table: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? "").trim();
    const header = /^\[\[?(.*?)\]\]?\s*(?:#.*)?$/.exec(line);
    const assignment = header === null ? /^((?:"(?:[^"\\]|\\.)*"|'[^']*'|[^=#"'])+)=/.exec(line) : null;
    const path = keyPath(header?.[1] ?? assignment?.[1] ?? "");
    if (path === null) continue;
    const full = header === null ? [...table, ...path] : path;
    if (header !== null) table = path;
    if (wanted.every((part, n) => full[n] === part)) return `${file}:${i + 1}`;
  }
  return file;
}

/** The parts of a TOML key as written, bare or quoted, joined by dots; null when it is none. */
function keyPath(raw: string): string[] | null {
  const part = /\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*/y;
  const parts: string[] = [];
  for (let i = 0; ; i++) {
    part.lastIndex = i;
    const m = part.exec(raw);
    if (m === null) return null;
    parts.push(m[1] ?? m[2] ?? m[3] ?? "");
    i = part.lastIndex;
    if (i === raw.length) return parts;
    if (raw[i] !== ".") return null;
  }
}
