// The API's only request inputs are query parameters with enumerated values (?stream=1). Checking those takes
// a few lines; building an ajv instance for them was the largest single cost of starting the API (about
// 100 ms before the first 200). The schemas stay JSON Schema, served in the OpenAPI document as they are.
import type { FastifySchemaCompiler } from "fastify";
import type { JsonSchema } from "./schemas.ts";

interface EnumParameter {
  type: "string";
  enum: string[];
}

function isEnumParameter(v: unknown): v is EnumParameter {
  if (typeof v !== "object" || v === null) return false;
  const p = v as Record<string, unknown>;
  return (
    Object.keys(p).every((k) => k === "type" || k === "enum") &&
    p.type === "string" &&
    Array.isArray(p.enum) &&
    p.enum.every((e) => typeof e === "string")
  );
}

/** fastify validatorCompiler for querystring schemas of enum-valued string parameters; refuses anything richer. */
export const compileQueryValidator: FastifySchemaCompiler<JsonSchema> = ({ schema, httpPart, method, url }) => {
  const props = (schema.properties ?? {}) as Record<string, unknown>;
  const required = (schema.required ?? []) as string[];
  const params = new Map<string, EnumParameter>();
  for (const [name, prop] of Object.entries(props)) {
    if (!isEnumParameter(prop)) throw new Error(`${method} ${url}: parameter "${name}" is not a string enum`);
    params.set(name, prop);
  }
  if (httpPart !== "querystring" || schema.type !== "object" || schema.additionalProperties !== false) {
    throw new Error(`${method} ${url}: only closed querystring objects are supported, got ${httpPart}`);
  }
  return (data: unknown) => {
    const query = (typeof data === "object" && data !== null ? data : {}) as Record<string, unknown>;
    for (const [name, value] of Object.entries(query)) {
      const param = params.get(name);
      if (param === undefined) return { error: new Error(`querystring has unknown parameter "${name}"`) };
      if (typeof value !== "string" || !param.enum.includes(value)) {
        return { error: new Error(`querystring/${name} must be one of ${param.enum.join(", ")}`) };
      }
    }
    const missing = required.find((name) => !(name in query));
    if (missing !== undefined) return { error: new Error(`querystring must have parameter "${missing}"`) };
    return { value: query };
  };
};
