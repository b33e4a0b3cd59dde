// Reads /etc/kata-sysextd/config.toml (under --root). A missing file means the defaults; anything present is
// checked against the schema, and the first problem names the file, the line, the key and what was expected.
import { readFile } from "node:fs/promises";
import { parse, TomlError } from "smol-toml";
import { KataError } from "../errors.ts";
import { CONSTRAINT_KEYS, type Config, type Constraint, DEFAULTS, type Leaf, SECTIONS } from "./schema.ts";

type Table = Record<string, unknown>;
const isTable = (v: unknown): v is Table => typeof v === "object" && v !== null && !Array.isArray(v);

export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return structuredClone(DEFAULTS);
    throw new KataError("config-unreadable", `${file}: cannot read: ${(err as Error).message}`, {
      remedy: "make the file readable by root or remove it to use the defaults",
    });
  }
  return parseConfig(text, file);
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
  for (const [section, value] of Object.entries(doc)) {
    const leaves = SECTIONS[section];
    if (leaves === undefined) {
      throw invalid(`${at(text, file, section)}: unknown section "${section}"; expected one of ${known(SECTIONS)}`);
    }
    if (!isTable(value)) throw invalid(`${at(text, file, section)}: "${section}" must be a table ([${section}])`);
    const target = config[section] as Record<string, unknown>;
    for (const [key, raw] of Object.entries(value)) {
      if (section === "policy" && key === "constraints") {
        target.constraints = parseConstraints(raw, text, file);
        continue;
      }
      const entry = Object.entries(leaves).find(([, leaf]) => leaf.toml === key);
      if (entry === undefined) {
        const names = Object.values(leaves).map((l) => l.toml);
        if (section === "policy") names.push("constraints");
        throw invalid(
          `${at(text, file, key, section)}: unknown key "${section}.${key}"; expected one of ${names.join(", ")}`,
        );
      }
      const [field, leaf] = entry;
      target[field] = checked(leaf, raw, `${section}.${key}`, at(text, file, key, section));
    }
  }
  return config as unknown as Config;
}

function parseConstraints(raw: unknown, text: string, file: string): Constraint[] {
  const where = at(text, file, "constraints", "policy");
  if (!Array.isArray(raw)) {
    throw invalid(`${where}: key "policy.constraints" must be an array of tables {kata, flatcar, reason}`);
  }
  return raw.map((item, i) => {
    const key = `policy.constraints[${i}]`;
    if (!isTable(item)) throw invalid(`${where}: ${key} must be a table {kata, flatcar, reason}`);
    const out: Partial<Constraint> = {};
    for (const [k, v] of Object.entries(item)) {
      const leaf = CONSTRAINT_KEYS[k as keyof Constraint];
      if (leaf === undefined) throw invalid(`${where}: unknown key "${key}.${k}"; expected kata, flatcar, reason`);
      out[k as keyof Constraint] = checked(leaf, v, `${key}.${k}`, where) as string;
    }
    for (const k of Object.keys(CONSTRAINT_KEYS) as (keyof Constraint)[]) {
      if (out[k] === undefined) throw invalid(`${where}: ${key} is missing "${k}" (${CONSTRAINT_KEYS[k].expected})`);
    }
    return out as Constraint;
  });
}

function checked(leaf: Leaf, raw: unknown, key: string, where: string): unknown {
  if (!leaf.check(raw)) {
    throw invalid(`${where}: key "${key}" must be ${leaf.expected}, got ${JSON.stringify(toJson(raw))}`);
  }
  return typeof raw === "bigint" ? Number(raw) : raw;
}

const toJson = (v: unknown): unknown => (typeof v === "bigint" ? Number(v) : v);
const known = (t: Record<string, unknown>): string => Object.keys(t).join(", ");
const invalid = (message: string): KataError =>
  new KataError("config-invalid", message, { remedy: "fix the configuration file and restart or reload the daemon" });

/** Best effort "file:line" for a key, so the operator's editor jumps to it. */
function at(text: string, file: string, key: string, section?: string): string {
  const lines = text.split("\n");
  let inSection = section === undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? "").trim();
    const header = /^\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?/.exec(line);
    if (header) {
      if (section === undefined && header[1] === key) return `${file}:${i + 1}`;
      inSection = header[1] === section;
      continue;
    }
    if (inSection && new RegExp(`^"?${key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}"?\\s*=`).test(line)) {
      return `${file}:${i + 1}`;
    }
  }
  return file;
}
