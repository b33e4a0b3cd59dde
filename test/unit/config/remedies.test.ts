// Every configuration key a message or remedy names must exist: the walk reads every string the sources hold
// (with the TypeScript parser, so code such as `config.fetch.maxBytes` is not mistaken for text) and checks each
// `[section] key` and `section.key` in them against the schema.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { COMPANION_KEYS, CONSTRAINT_KEYS, REQUIREMENT_KEYS, SECTIONS } from "../../../src/config/schema.ts";

const SRC = join(import.meta.dirname, "../../../src");

/** TOML keys by section, as an operator writes them. */
const KEYS: Record<string, string[]> = Object.fromEntries(
  Object.entries(SECTIONS).map(([section, leaves]) => [section, Object.values(leaves).map((l) => l.toml)]),
);
KEYS.policy = [...(KEYS.policy ?? []), "constraints", "requires"];
KEYS.companion = Object.values(COMPANION_KEYS).map((l) => l.toml);
const TABLE_KEYS: Record<string, string[]> = {
  "policy.constraints": Object.values(CONSTRAINT_KEYS).map((l) => l.toml),
  "policy.requires": Object.values(REQUIREMENT_KEYS).map((l) => l.toml),
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** Every string literal and template text in `file`, with its line. */
function stringsOf(file: string): { text: string; line: number }[] {
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
  const found: { text: string; line: number }[] = [];
  const visit = (node: ts.Node): void => {
    if (
      ts.isStringLiteral(node) ||
      ts.isNoSubstitutionTemplateLiteral(node) ||
      ts.isTemplateHead(node) ||
      ts.isTemplateMiddle(node) ||
      ts.isTemplateTail(node)
    ) {
      // Module specifiers ("../config/schema.ts") are paths, not text.
      if (!ts.isImportDeclaration(node.parent) && !ts.isExportDeclaration(node.parent)) {
        found.push({ text: node.text, line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1 });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

const SECTION = Object.keys(KEYS).join("|");
/** `[fetch] max_bytes`, `[[companion]] name`, `[source] verify =`. */
const BRACKETED = new RegExp(`\\[\\[?(${SECTION})\\]\\]?\\s+([A-Za-z_][A-Za-z0-9_]*)(\\s*=)?`, "g");
/** `policy.versions`, `fetch.max_bytes`, `policy.requires[0].companion`. */
const DOTTED = new RegExp(`(?<![\\w./-])(${SECTION})\\.([A-Za-z_][A-Za-z0-9_]*)(?:\\[\\d+\\]\\.([A-Za-z_]\\w*))?`, "g");

/** `section.key` names a file or unit rather than a key when what follows is one of these. */
const NOT_KEYS = new Set(["service", "sock", "toml", "conf", "d", "json", "raw", "timer", "socket"]);
/**
 * After a section header a word is a key when it looks like one: snake_case or camelCase, or set with `=`.
 * Other plain words are prose ("point [source] at the release").
 */
const KEY_LIKE = /^(\w*[_A-Z]\w*)$/;

function problems(text: string): string[] {
  const out: string[] = [];
  for (const [, section = "", key = "", assigned] of text.matchAll(BRACKETED)) {
    const isKey = assigned !== undefined || KEY_LIKE.test(key);
    if (isKey && !KEYS[section]?.includes(key)) out.push(`[${section}] ${key}`);
  }
  for (const [, section = "", key = "", inner] of text.matchAll(DOTTED)) {
    if (NOT_KEYS.has(key)) continue;
    if (!KEYS[section]?.includes(key)) {
      out.push(`${section}.${key}`);
      continue;
    }
    const table = TABLE_KEYS[`${section}.${key}`];
    if (inner !== undefined && table !== undefined && !table.includes(inner)) out.push(`${section}.${key}[].${inner}`);
  }
  return out;
}

describe("configuration keys named in messages and remedies", () => {
  it.each([
    ["raise [fetch] maxBytes if the image is really this large", ["[fetch] maxBytes"]],
    ['key "policy.version" must be a semver range', ["policy.version"]],
    ["policy.requires[0].kata_version is missing", ["policy.requires[].kata_version"]],
    ["raise [fetch] max_bytes; see policy.requires[0].companion and containerd.service", []],
    ["point [source] at the release it came from", []],
    ['set [source] verfy = "checksum"', ["[source] verfy"]],
    ["raise [fetch] manifestMaxBytes", ["[fetch] manifestMaxBytes"]],
    ['set [source] verify = "checksum", or [[companion]] versions', []],
  ])("the walk itself: %j", (text, expected) => {
    expect(problems(text)).toEqual(expected);
  });

  it("every one in src/ exists in the schema", () => {
    const found = sourceFiles(SRC).flatMap((file) =>
      stringsOf(file).flatMap(({ text, line }) =>
        problems(text).map((p) => `${file.slice(SRC.length + 1)}:${line}: ${p}`),
      ),
    );
    expect(found).toEqual([]);
  });
});
