// The API's routes, declared once: method, path, schemas and handler. server.ts registers them with fastify
// and openapi.ts documents them from the same list, so the served document cannot drift from the routes.
import { PassThrough } from "node:stream";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { CanaryPhase } from "../canary/canary.ts";
import type { CanaryStatus, PreflightSummary, StatusDocument, StatusSnapshot } from "../status.ts";
import type { Metrics } from "./metrics.ts";
import {
  type ActionResult,
  actionResultSchema,
  type CanaryStreamLine,
  canaryStreamLineSchema,
  type ErrorBody,
  errorBodySchema,
  healthSchema,
  type JsonSchema,
  metricsTextSchema,
  preflightSummarySchema,
  type ReadyBody,
  type RefreshStreamLine,
  readySchema,
  refreshQuerySchema,
  refreshStreamLineSchema,
  statusDocumentSchema,
  type VersionsResult,
  versionsSchema,
} from "./schemas.ts";

export interface RefreshOptions {
  /** Lift the holds earlier rollbacks put on the images they rolled back from, then reconcile. */
  releaseHolds?: boolean;
}

export interface ApiActions {
  refresh(options?: RefreshOptions): Promise<ActionResult>;
  rollback(): Promise<ActionResult>;
  versions(): Promise<VersionsResult>;
  preflight(): Promise<PreflightSummary>;
  /** Runs the canary with the active image now; `onPhase` hears each phase as it starts. */
  canary(onPhase: (phase: CanaryPhase) => void): Promise<CanaryStatus>;
}

export interface RouteDeps {
  /** The daemon's status, from memory; /status serves it as the document (statusDocument). */
  snapshot: () => StatusSnapshot;
  metrics: Metrics;
  actions: ApiActions;
  /** How often a streamed refresh looks at the snapshot for new progress. */
  progressIntervalMs: number;
  /** The OpenAPI document of the listener the route is served on. */
  openapi: () => unknown;
}

export const JSON_TYPE = "application/json";
/** With the charset spelled out, fastify does not have to append it on every reply. */
export const JSON_UTF8 = "application/json; charset=utf-8";
export const NDJSON_TYPE = "application/x-ndjson";
export const METRICS_TYPE = "text/plain";

export interface ResponseSpec {
  description: string;
  content: Record<string, { schema: JsonSchema }>;
}

export interface RouteSpec {
  method: "GET" | "POST";
  url: string;
  summary: string;
  /** Mutations and slow work are served on the root-only unix socket, never on TCP. */
  socketOnly: boolean;
  querystring?: JsonSchema;
  responses: Record<string, ResponseSpec>;
  handler: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
}

const json = (description: string, schema: JsonSchema): ResponseSpec => ({
  description,
  content: { [JSON_TYPE]: { schema } },
});

/** Every route answers errors with the same body; declared per route so fastify serializes it from the schema. */
const errors = {
  "4xx": json("client error", errorBodySchema),
  "5xx": json("server error", errorBodySchema),
};

/**
 * The /status document of a snapshot. Its `extension` block and `nextBoot.kata` are Kata's (members[0]) as clients
 * have read them from the start; the snapshot keeps them only in its members, so they are derived here, the edge.
 */
export function statusDocument(snapshot: StatusSnapshot): StatusDocument {
  const { members, nextBoot, limitation, ...rest } = snapshot;
  const kata = members[0];
  return {
    ...rest,
    extension: {
      name: kata.name,
      active: kata.active,
      previous: kata.previous,
      merged: kata.merged,
      image: kata.image,
      trust: kata.trust,
      limitation,
    },
    nextBoot: nextBoot === null ? null : { ...nextBoot, kata: kata.nextBoot },
    members: members.map(({ image: _image, trust: _trust, ...member }) => member),
  };
}

/**
 * What /readyz checks: an active, merged extension set (Kata and every companion) on a host whose preflight found
 * no failure, and, when the canary is on, whose last canary ran with the active Kata image and passed.
 */
export function readiness(doc: StatusSnapshot): ReadyBody {
  const reasons: string[] = [];
  for (const m of doc.members) {
    if (m.active === null) reasons.push(`no ${m.name} image is active`);
    else if (!m.merged) {
      reasons.push(`${m.name} ${m.active} is active but not merged${doc.limitation ? ` (${doc.limitation})` : ""}`);
    }
  }
  // The canary runs Kata's image.
  const handler = doc.canary.handler;
  const image = doc.members[0].image;
  if (handler !== null && image !== null) {
    const file = image.split("/").pop() ?? image;
    const last = doc.canary.results.find((r) => r.handler === handler);
    if (last === undefined || last.image !== file)
      reasons.push(`the canary has not run with ${handler} for ${file} yet`);
    else if (last.outcome === "failed")
      reasons.push(`the canary failed with ${handler} at ${last.step}: ${last.reason}`);
  }
  if (doc.preflight === null) reasons.push("preflight has not run yet");
  else if (doc.preflight.failed > 0) {
    const failed = doc.preflight.checks.filter((c) => c.status === "fail").map((c) => c.id);
    reasons.push(`preflight failed: ${failed.join(", ") || `${doc.preflight.failed} check(s)`}`);
  }
  return { ready: reasons.length === 0, reasons };
}

/** The route's compiled 200 serializer for a content type (fast-json-stringify, from the declared schema). */
function serializerOf<T>(reply: FastifyReply, contentType: string): (value: T) => string {
  const serialize = reply.getSerializationFunction("200", contentType);
  if (serialize === undefined) throw new Error(`route declares no ${contentType} schema for 200`);
  return serialize as unknown as (value: T) => string;
}

/** ?stream=1|true|0|false decides; without it, an Accept of application/x-ndjson asks for the stream. */
type RefreshQuery = { stream?: string; releaseHolds?: string } | undefined;
const yes = (value: string | undefined): boolean => value === "1" || value === "true";

const wantsStream = (request: FastifyRequest): boolean => {
  const stream = (request.query as RefreshQuery)?.stream;
  if (stream !== undefined) return yes(stream);
  return (request.headers.accept ?? "").includes(NDJSON_TYPE);
};

const refreshOptions = (request: FastifyRequest): RefreshOptions => ({
  releaseHolds: yes((request.query as RefreshQuery)?.releaseHolds),
});

/**
 * Runs a refresh and streams its progress: one line whenever the snapshot's state or download changed (and
 * at least every heartbeat, so clients can tell a slow download from a dead daemon), then one end line. A
 * client that goes away does not cancel the refresh; the daemon owns it.
 */
function streamRefresh(deps: RouteDeps, reply: FastifyReply, options: RefreshOptions): FastifyReply {
  const serialize = serializerOf<RefreshStreamLine>(reply, NDJSON_TYPE);
  const out = new PassThrough();
  // Runs from a timer and from promise callbacks: a throw here would take the daemon down, so a line that
  // cannot be serialized is skipped instead.
  const write = (line: RefreshStreamLine): string | null => {
    try {
      const text = serialize(line);
      if (!out.destroyed && !out.writableEnded) out.write(`${text}\n`);
      return text;
    } catch {
      return null;
    }
  };
  let last: string | null = null;
  let quietTicks = 0;
  const heartbeatTicks = Math.max(1, Math.round(5000 / deps.progressIntervalMs));
  const progress = (): void => {
    const doc = deps.snapshot();
    const key = JSON.stringify([doc.state, doc.download]);
    if (key === last && ++quietTicks < heartbeatTicks) return;
    last = key;
    quietTicks = 0;
    write({ type: "progress", state: doc.state, download: doc.download });
  };
  const timer = setInterval(progress, deps.progressIntervalMs);
  const running = deps.actions.refresh(options);
  progress();
  running
    .then(
      (result) => write({ type: "result", result }),
      (err: unknown) => write({ type: "error", error: errorBody(err) }),
    )
    .finally(() => {
      clearInterval(timer);
      out.end();
    });
  return reply.code(200).type(NDJSON_TYPE).send(out);
}

/** Runs the canary and streams its phases as they start, then its result: the CLI shows progress as it comes. */
function streamCanary(deps: RouteDeps, reply: FastifyReply): FastifyReply {
  const serialize = serializerOf<CanaryStreamLine>(reply, NDJSON_TYPE);
  const out = new PassThrough();
  const write = (line: CanaryStreamLine): void => {
    try {
      if (!out.destroyed && !out.writableEnded) out.write(`${serialize(line)}\n`);
    } catch {
      // a line that cannot be serialized is skipped; the end line still comes
    }
  };
  deps.actions
    .canary((phase) => write({ type: "progress", phase }))
    .then(
      (result) => write({ type: "result", result }),
      (err: unknown) => write({ type: "error", error: errorBody(err) }),
    )
    .finally(() => out.end());
  return reply.code(200).type(NDJSON_TYPE).send(out);
}

export function errorBody(err: unknown): ErrorBody {
  const e = err as { code?: unknown; message?: unknown; remedy?: unknown };
  return {
    code: typeof e?.code === "string" ? e.code : "internal",
    message: typeof e?.message === "string" ? e.message : String(err),
    remedy: typeof e?.remedy === "string" ? e.remedy : null,
  };
}

export function routes(deps: RouteDeps): RouteSpec[] {
  const sendJson = (reply: FastifyReply, code: number, body: unknown): FastifyReply =>
    reply.code(code).type(JSON_UTF8).send(body);
  // The snapshot changes between passes, not between requests: its document is built once per change.
  let built: { from: StatusSnapshot; doc: StatusDocument } | null = null;
  const document = (): StatusDocument => {
    const snapshot = deps.snapshot();
    if (built?.from !== snapshot) built = { from: snapshot, doc: statusDocument(snapshot) };
    return built.doc;
  };

  return [
    {
      method: "GET",
      url: "/status",
      summary: "The daemon's status document, from memory",
      socketOnly: false,
      responses: { "200": json("the status document", statusDocumentSchema), ...errors },
      handler: async (_request, reply) => reply.code(200).type(JSON_UTF8).send(document()),
    },
    {
      method: "GET",
      url: "/healthz",
      summary: "Liveness: the daemon answers",
      socketOnly: false,
      responses: { "200": json("alive", healthSchema), ...errors },
      handler: async (_request, reply) => sendJson(reply, 200, { ok: true, state: deps.snapshot().state }),
    },
    {
      method: "GET",
      url: "/readyz",
      summary: "Readiness: Kata is active, merged, no preflight check failed and the active image's canary passed",
      socketOnly: false,
      responses: {
        "200": json("ready", readySchema),
        "503": json("not ready; reasons say why", readySchema),
        ...errors,
      },
      handler: async (_request, reply) => {
        const ready = readiness(deps.snapshot());
        return sendJson(reply, ready.ready ? 200 : 503, ready);
      },
    },
    {
      method: "GET",
      url: "/preflight",
      summary: "The last hypervisor preflight result, from memory",
      socketOnly: false,
      responses: {
        "200": json("the last preflight summary", preflightSummarySchema),
        "503": json("no preflight has run yet", errorBodySchema),
        ...errors,
      },
      handler: async (_request, reply) => {
        const preflight = deps.snapshot().preflight;
        if (preflight === null) {
          return sendJson(reply, 503, {
            code: "preflight-pending",
            message: "no preflight has run yet",
            remedy: "wait for the first reconcile, or run kata-sysextctl preflight",
          });
        }
        return sendJson(reply, 200, preflight);
      },
    },
    {
      method: "GET",
      url: "/metrics",
      summary: "Prometheus metrics",
      socketOnly: false,
      responses: {
        "200": { description: "text exposition", content: { [METRICS_TYPE]: { schema: metricsTextSchema } } },
      },
      handler: async (_request, reply) => {
        deps.metrics.setStatus(deps.snapshot());
        const text = await deps.metrics.render();
        return reply.code(200).header("content-type", deps.metrics.contentType).send(text);
      },
    },
    {
      method: "GET",
      url: "/openapi.json",
      summary: "This document",
      socketOnly: false,
      responses: { "200": json("OpenAPI 3.1 document", { type: "object", additionalProperties: true }) },
      handler: async (_request, reply) => sendJson(reply, 200, deps.openapi()),
    },
    {
      method: "POST",
      url: "/v1/refresh",
      summary:
        "Reconcile now; ?stream=1 (or Accept: application/x-ndjson) streams progress lines; ?releaseHolds=1 first lifts the holds of earlier rollbacks",
      socketOnly: true,
      querystring: refreshQuerySchema,
      responses: {
        "200": {
          description: "the outcome, or a stream of progress lines ending in the outcome",
          content: { [JSON_TYPE]: { schema: actionResultSchema }, [NDJSON_TYPE]: { schema: refreshStreamLineSchema } },
        },
        ...errors,
      },
      handler: async (request, reply) => {
        if (wantsStream(request)) return streamRefresh(deps, reply, refreshOptions(request));
        return sendJson(reply, 200, await deps.actions.refresh(refreshOptions(request)));
      },
    },
    {
      method: "POST",
      url: "/v1/rollback",
      summary: "Re-activate the previous image",
      socketOnly: true,
      responses: { "200": json("the outcome", actionResultSchema), ...errors },
      handler: async (_request, reply) => sendJson(reply, 200, await deps.actions.rollback()),
    },
    {
      method: "GET",
      url: "/v1/versions",
      summary: "Local and remote versions",
      socketOnly: true,
      responses: { "200": json("local and remote versions", versionsSchema), ...errors },
      handler: async (_request, reply) => sendJson(reply, 200, await deps.actions.versions()),
    },
    {
      method: "POST",
      url: "/v1/canary",
      summary: "Start the canary container with the active image now; streams its phases, then its result",
      socketOnly: true,
      responses: {
        "200": {
          description: "progress lines ending in the canary's result (passed or failed) or an error",
          content: { [NDJSON_TYPE]: { schema: canaryStreamLineSchema } },
        },
        ...errors,
      },
      handler: async (_request, reply) => streamCanary(deps, reply),
    },
    {
      method: "POST",
      url: "/v1/preflight",
      summary: "Run the hypervisor preflight now",
      socketOnly: true,
      responses: { "200": json("the preflight summary", preflightSummarySchema), ...errors },
      handler: async (_request, reply) => sendJson(reply, 200, await deps.actions.preflight()),
    },
  ];
}
