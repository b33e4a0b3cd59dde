// How kata-sysextctl checks a daemon's answer against the schema the route serves it with.
import { describe, expect, it } from "vitest";
import { matches, mismatch } from "../../../src/api/check.ts";
import { actionResultSchema, statusDocumentSchema, versionsSchema } from "../../../src/api/schemas.ts";
import { statusDoc, VERSIONS } from "../../integration/api/fixtures.ts";

const OK = { ok: true, result: "ok", message: "done", code: null, remedy: null, active: "3.32.0" };

describe("mismatch", () => {
  it.each([
    ["a matching answer", OK, null],
    ["a field it does not know (a newer daemon's)", { ...OK, took: 3 }, null],
    ["a required field missing", { ...OK, message: undefined }, "field message: missing"],
    ["a field of the wrong type", { ...OK, ok: "yes" }, "field ok: must be boolean, got string"],
    ["null where the schema has no null", { ...OK, message: null }, "field message: must be string, got null"],
    [
      "a value outside the enum",
      { ...OK, result: "maybe" },
      'field result: must be one of ok, failed, deferred, got "maybe"',
    ],
    ["not an object at all", [OK], "the answer: must be object, got array"],
  ])("%s", (_case, answer, expected) => {
    expect(mismatch(actionResultSchema, JSON.parse(JSON.stringify(answer)))).toBe(expected);
  });

  it("names nested fields and array items by their path", () => {
    const doc = statusDoc();
    const broken = { ...doc, members: [doc.members[0], { ...doc.members[0], merged: 1 }] };
    expect(mismatch(statusDocumentSchema, broken)).toBe("field members[1].merged: must be boolean, got integer");
    const { merged: _merged, ...extension } = doc.extension;
    expect(mismatch(statusDocumentSchema, { ...doc, extension })).toBe("field extension.merged: missing");
    const download = { file: "f", bytes: 2.5, total: null, bytesPerSecond: 0 };
    expect(mismatch(statusDocumentSchema, { ...doc, download })).toBe(
      "field download.bytes: must be integer, got number",
    );
    expect(mismatch(statusDocumentSchema, { ...doc, download: { ...download, bytes: -1 } })).toBe(
      "field download.bytes: must be at least 0, got -1",
    );
  });

  it("accepts fields added later as absent, only where it is told so", () => {
    const { skipped: _skipped, ...older } = VERSIONS;
    expect(mismatch(versionsSchema, older)).toBe("field skipped: missing");
    expect(mismatch(versionsSchema, older, { addedLater: ["skipped"] })).toBeNull();
    const doc = statusDoc();
    const members = doc.members.map(({ held: _held, ...m }) => m);
    expect(mismatch(statusDocumentSchema, { ...doc, members })).toBe("field members[0].held: missing");
    expect(mismatch(statusDocumentSchema, { ...doc, members }, { addedLater: ["members[].held"] })).toBeNull();
  });

  it("names fields from where the value sits", () => {
    const { ok: _ok, ...withoutOk } = OK;
    expect(mismatch(actionResultSchema, withoutOk, { at: "result" })).toBe("field result.ok: missing");
    expect(matches(actionResultSchema, OK)).toBe(true);
  });

  it("refuses a schema it cannot check rather than passing the answer unchecked", () => {
    expect(() => mismatch({ anyOf: [{ type: "string" }] }, "a")).toThrow('cannot check schema keyword "anyOf"');
  });
});
