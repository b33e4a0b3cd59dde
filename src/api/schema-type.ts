// The TypeScript type a JSON schema of schemas.ts describes, so the schemas the routes serve are the one source of
// the API's types: a field added to a schema and not to the code (or the reverse) is a type error. Covers the
// keywords schemas.ts uses (type or a list of types, enum, properties, required, items); anything else is unknown.

/** The type names a schema allows: `type: "string"` or `type: ["string", "null"]`. */
type TypeNames<S> = S extends { readonly type: infer T } ? (T extends readonly (infer U)[] ? U : T) : never;

/** What one type name of schema S admits; distributes over a union of names. */
type OfTypeName<S, N> = N extends "null"
  ? null
  : N extends "string"
    ? S extends { readonly enum: readonly (infer E)[] }
      ? E
      : string
    : N extends "boolean"
      ? boolean
      : N extends "integer" | "number"
        ? number
        : N extends "array"
          ? S extends { readonly items: infer I }
            ? FromSchema<I>[]
            : unknown[]
          : N extends "object"
            ? S extends { readonly properties: infer P; readonly required: readonly (infer R)[] }
              ? ObjectOf<P, R>
              : Record<string, unknown>
            : unknown;

/** Required properties as such, the others optional; flattened so editors and errors show one object. */
type ObjectOf<P, R> = Flat<
  { -readonly [K in keyof P & R]: FromSchema<P[K]> } & { -readonly [K in Exclude<keyof P, R>]?: FromSchema<P[K]> }
>;

type Flat<T> = { [K in keyof T]: T[K] };

export type FromSchema<S> = OfTypeName<S, TypeNames<S>>;
