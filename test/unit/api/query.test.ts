// The querystring validator that stands in for ajv: enum-valued string parameters, nothing richer.
import { describe, expect, it } from "vitest";
import { compileQueryValidator } from "../../../src/api/query.ts";
import { refreshQuerySchema } from "../../../src/api/schemas.ts";

const compile = (schema: Record<string, unknown>, httpPart = "querystring") =>
  compileQueryValidator({ schema, httpPart, method: "POST", url: "/v1/refresh" });

describe("compileQueryValidator", () => {
  const validate = compile(refreshQuerySchema);

  it.each([[{}], [{ stream: "1" }], [{ stream: "false" }]])("accepts %o", (query) => {
    expect(validate(query)).toEqual({ value: query });
  });

  it.each([
    [{ stream: "yes" }, "querystring/stream must be one of 0, 1, true, false"],
    [{ stream: ["1", "1"] }, "querystring/stream must be one of 0, 1, true, false"],
    [{ other: "1" }, 'querystring has unknown parameter "other"'],
  ])("refuses %o", (query, message) => {
    expect(validate(query)).toEqual({ error: new Error(message) });
  });

  it("enforces required parameters", () => {
    const v = compile({ ...refreshQuerySchema, required: ["stream"] });
    expect(v({})).toEqual({ error: new Error('querystring must have parameter "stream"') });
  });

  it("refuses schemas it cannot check rather than skipping them", () => {
    expect(() =>
      compile({ type: "object", additionalProperties: false, properties: { n: { type: "integer" } } }),
    ).toThrow(/not a string enum/);
    expect(() => compile(refreshQuerySchema, "body")).toThrow(/only closed querystring/);
    expect(() => compile({ type: "object", properties: {} })).toThrow(/only closed querystring/);
  });
});
