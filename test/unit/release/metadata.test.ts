import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseMetadata } from "../../../src/release/metadata.ts";

describe("parseMetadata", () => {
  it("reads constraints and withdrawals", () => {
    const r = parseMetadata(
      JSON.stringify({
        schemaVersion: 1,
        constraints: [{ kata: ">=4.0.0", flatcar: ">=4459.0.0", reason: "kernel 6.6" }],
        withdrawn: [{ kata: "3.30.0", reason: "broken shim" }],
        publishedBy: "bakery",
      }),
    );
    expect(r).toEqual({
      ok: true,
      value: {
        constraints: [{ kata: ">=4.0.0", flatcar: ">=4459.0.0", reason: "kernel 6.6" }],
        withdrawn: [{ kata: "3.30.0", reason: "broken shim" }],
        requires: [],
        kernels: [],
        problems: ['unknown key "publishedBy" skipped'],
      },
    });
  });

  it("reads companion requirements and shipped guest kernels", () => {
    const r = parseMetadata(
      JSON.stringify({
        schemaVersion: 1,
        requires: [{ kata: "3.32.x", companion: "cloud-hypervisor", versions: ">=51.0 <53", reason: "tested pair" }],
        kernels: [{ kata: "3.32.x", kernel: "6.12.8" }],
      }),
    );
    expect(r.ok && r.value.requires).toEqual([
      { kata: "3.32.x", companion: "cloud-hypervisor", versions: ">=51.0 <53", reason: "tested pair" },
    ]);
    expect(r.ok && r.value.kernels).toEqual([{ kata: "3.32.x", kernel: "6.12.8" }]);
    const bad = parseMetadata(
      JSON.stringify({
        schemaVersion: 1,
        requires: [{ kata: "3.32.x", companion: "ch", versions: "soon", reason: "x" }],
      }),
    );
    expect(bad.ok).toBe(false);
    expect(bad.ok ? "" : bad.error.message).toContain('requires[0].versions must be a semver range, got "soon"');
  });

  it.each([
    ["not JSON", "{", "not valid JSON"],
    ["not an object", "[]", "must be a JSON object"],
    ["wrong schema", '{"schemaVersion":2}', '"schemaVersion" must be 1'],
    ["constraints not a list", '{"schemaVersion":1,"constraints":{}}', '"constraints" must be an array'],
    ["entry not an object", '{"schemaVersion":1,"constraints":[1]}', "constraints[0] must be an object"],
    [
      "bad range",
      '{"schemaVersion":1,"constraints":[{"kata":"latest","flatcar":">=1","reason":"x"}]}',
      'constraints[0].kata must be a semver range, got "latest"',
    ],
    [
      "missing reason",
      '{"schemaVersion":1,"withdrawn":[{"kata":"1.0.0"}]}',
      "withdrawn[0].reason must be a non-empty string",
    ],
  ])("refuses %s as a whole", (_title, text, why) => {
    const r = parseMetadata(text, "https://example.org/kata-containers/metadata.json");
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe("manifest-invalid");
      expect(r.error.message).toContain("https://example.org/kata-containers/metadata.json");
      expect(r.error.message).toContain(why);
    }
  });

  it("never throws on arbitrary text or JSON", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 200 }), (t) => [true, false].includes(parseMetadata(t).ok)),
    );
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        parseMetadata(JSON.stringify({ schemaVersion: 1, constraints: v, withdrawn: v }));
      }),
    );
  });
});
