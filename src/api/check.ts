// Checks a daemon's answer against the schema the route serves it with, so the CLI trusts the same contract the
// server declares. A few lines over the keywords schemas.ts uses rather than ajv: compiling the status schema
// with ajv would cost every `kata-sysextctl status` more than the request itself (see query.ts for the server).
import type { FromSchema } from "./schema-type.ts";
import type { JsonSchema } from "./schemas.ts";

export interface CheckOptions {
  /** Where the value sits in the answer, to name fields from there ("result" names "result.ok"). */
  at?: string;
  /**
   * Fields a daemon older than them does not send, as paths with `[]` for array items ("reboot", "members[].held"):
   * absent is accepted there. Fields the schema does not know (a newer daemon's) are always accepted.
   */
  addedLater?: readonly string[];
}

/** Keywords that only describe: nothing to check in an answer (a date-time is shown as the daemon wrote it). */
const ANNOTATIONS = new Set(["description", "format", "additionalProperties"]);
const CHECKED = new Set(["type", "enum", "properties", "required", "items", "minimum"]);

/** The first way `value` does not match `schema`, naming the field ("field extension.merged: missing"); else null. */
export function mismatch(schema: JsonSchema, value: unknown, options: CheckOptions = {}): string | null {
  return check(schema, value, options.at ?? "", "", new Set(options.addedLater ?? []));
}

/** Whether `value` matches `schema`, and so has the type derived from it. */
export function matches<const S extends JsonSchema>(
  schema: S,
  value: unknown,
  options: CheckOptions = {},
): value is FromSchema<S> {
  return mismatch(schema, value, options) === null;
}

function check(schema: JsonSchema, value: unknown, at: string, shape: string, later: Set<string>): string | null {
  const unknownKeyword = Object.keys(schema).find((k) => !CHECKED.has(k) && !ANNOTATIONS.has(k));
  // A schema this cannot check is our bug, not the daemon's: say so rather than pass the answer unchecked.
  if (unknownKeyword !== undefined) throw new Error(`cannot check schema keyword "${unknownKeyword}" at ${at || "/"}`);
  const field = at === "" ? "the answer" : `field ${at}`;
  const types = [schema.type ?? []].flat() as string[];
  const kind = kindOf(value);
  if (types.length > 0 && !types.some((t) => t === kind || (t === "number" && kind === "integer"))) {
    return `${field}: must be ${types.join(" or ")}, got ${kind}`;
  }
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) {
    return `${field}: must be one of ${schema.enum.join(", ")}, got ${JSON.stringify(value)}`;
  }
  if (typeof schema.minimum === "number" && typeof value === "number" && value < schema.minimum) {
    return `${field}: must be at least ${schema.minimum}, got ${value}`;
  }
  if (Array.isArray(value) && typeof schema.items === "object" && schema.items !== null) {
    for (const [i, item] of value.entries()) {
      const why = check(schema.items as JsonSchema, item, `${at}[${i}]`, `${shape}[]`, later);
      if (why !== null) return why;
    }
  }
  if (kind === "object" && typeof schema.properties === "object" && schema.properties !== null) {
    const object = value as Record<string, unknown>;
    const required = new Set((schema.required ?? []) as string[]);
    for (const [name, property] of Object.entries(schema.properties as Record<string, JsonSchema>)) {
      const path = at === "" ? name : `${at}.${name}`;
      const pathShape = shape === "" ? name : `${shape}.${name}`;
      if (!(name in object)) {
        if (required.has(name) && !later.has(pathShape)) return `field ${path}: missing`;
        continue;
      }
      const why = check(property, object[name], path, pathShape, later);
      if (why !== null) return why;
    }
  }
  return null;
}

function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}
