// The OpenAPI 3.1 document of one listener, assembled from the same route list and schemas fastify serves.
// JSON Schema 2020-12 is OpenAPI 3.1's schema dialect, so the schemas go in unchanged.
import type { RouteSpec } from "./routes.ts";

export type Transport = "tcp" | "socket";

export function openApiDocument(specs: readonly RouteSpec[], transport: Transport, version: string): unknown {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const spec of specs) {
    if (spec.socketOnly && transport === "tcp") continue;
    const parameters = Object.entries(
      (spec.querystring?.properties as Record<string, Record<string, unknown>> | undefined) ?? {},
    ).map(([name, schema]) => ({ name, in: "query", required: false, schema }));
    const operation = {
      summary: spec.summary,
      operationId: `${spec.method.toLowerCase()}${spec.url.replace(/[^a-z0-9]+([a-z0-9])?/gi, (_m, c?: string) => (c ?? "").toUpperCase())}`,
      ...(parameters.length > 0 ? { parameters } : {}),
      responses: Object.fromEntries(Object.entries(spec.responses).map(([code, r]) => [code.toUpperCase(), r])),
    };
    paths[spec.url] = { ...paths[spec.url], [spec.method.toLowerCase()]: operation };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "kata-sysextd",
      version,
      description:
        transport === "tcp"
          ? "Read-only status API on loopback TCP. Mutations are served only on the root-only unix socket."
          : "The full API on the root-only unix socket /run/kata-sysextd/api.sock.",
    },
    paths,
  };
}
