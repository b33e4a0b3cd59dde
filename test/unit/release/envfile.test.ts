import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseEnvFile } from "../../../src/release/envfile.ts";

const values = (text: string): Record<string, string> => ({ ...parseEnvFile(text).values });

describe("parseEnvFile", () => {
  it.each([
    ["plain", "A=b\n", { A: "b" }],
    ["no final newline", "A=b", { A: "b" }],
    ["empty value", "A=\n", { A: "" }],
    ["empty value at end of file", "A=", { A: "" }],
    ["double quotes", 'A="b c"\n', { A: "b c" }],
    ["single quotes keep backslashes", "A='b\\n'\n", { A: "b\\n" }],
    ["escaped quote in double quotes", 'A="a\\"b"\n', { A: 'a"b' }],
    ["other escapes in double quotes keep the backslash", 'A="a\\tb"\n', { A: "a\\tb" }],
    ["escaped $ and backtick", 'A="\\$x\\`"\n', { A: "$x`" }],
    ["escaped newline in double quotes is dropped", 'A="a\\\nb"\n', { A: "ab" }],
    ["newline inside quotes is kept", 'A="a\nb"\n', { A: "a\nb" }],
    ["bare backslash escapes the next char", "A=a\\ b\n", { A: "a b" }],
    ["line continuation", "A=a\\\nb\n", { A: "ab" }],
    ["quotes concatenate", "A='a'\"b\"c\n", { A: "abc" }],
    ["whitespace after a quote is skipped", "A='a'  b\n", { A: "ab" }],
    ["quote inside bare value is literal", 'A=a"b"\n', { A: 'a"b"' }],
    ["trailing whitespace chomped", "A=b \t \n", { A: "b" }],
    ["inner whitespace kept", "A=b  c\n", { A: "b  c" }],
    ["whitespace around = and key", "  A  =  b\n", { A: "b" }],
    ["comments", "# x\n; y\nA=b # not a comment\n", { A: "b # not a comment" }],
    ["last assignment wins", "A=1\nA=2\n", { A: "2" }],
    ["no shell expansion", "A=$HOME\n", { A: "$HOME" }],
    ["CRLF", "A=b\r\nC=d\r\n", { A: "b", C: "d" }],
    ["comment ending in backslash ends at the newline (systemd >= 254)", "# x \\\nA=b\n", { A: "b" }],
    ["a NUL anywhere voids the whole file, as in systemd", "A=b\n\0C=d\n", {}],
    ["a byte-order mark stays part of the first key", "\uFEFFA=b\nC=d\n", { "\uFEFFA": "b", C: "d" }],
    ["unterminated quote keeps the rest", 'A="b\nc', { A: "b\nc" }],
  ])("%s", (_title, text, expected) => {
    expect(values(text)).toEqual(expected);
  });

  it("keeps __proto__ as data, not as the prototype", () => {
    const { values } = parseEnvFile("__proto__=x\nconstructor=y\n");
    expect(Object.getPrototypeOf(values)).toBeNull();
    expect(Object.keys(values)).toEqual(["__proto__", "constructor"]);
  });

  it("reports malformed lines with their line numbers", () => {
    const { values, problems } = parseEnvFile("A=1\n\ngarbage here\nexport B=2\nC='open");
    expect(values).toMatchObject({ A: "1", "export B": "2", C: "open" });
    expect(problems).toEqual([
      { line: 3, message: 'no "=" in "garbage here"; line ignored' },
      { line: 4, message: 'key "export B" is not a valid variable name' },
      { line: 5, message: "unterminated quote at end of file; value kept up to there" },
    ]);
  });

  it("never throws and only reports problems at real line numbers", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 400 }), (text) => {
        const { values, problems } = parseEnvFile(text);
        const lines = text.split("\n").length;
        for (const p of problems) expect(p.line >= 1 && p.line <= lines).toBe(true);
        for (const v of Object.values(values)) expect(typeof v).toBe("string");
      }),
    );
  });

  it("reads back what a careful writer wrote", () => {
    const key = fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,10}$/);
    const value = fc.string({ maxLength: 30 }).filter((v) => !v.includes("\0"));
    fc.assert(
      fc.property(fc.dictionary(key, value, { maxKeys: 8 }), (env) => {
        const text = Object.entries(env)
          .map(([k, v]) => `${k}="${v.replace(/[\\"`$]/g, (c) => `\\${c}`)}"`)
          .join("\n");
        expect(values(text)).toEqual(env);
      }),
      { numRuns: 300 },
    );
  });
});
