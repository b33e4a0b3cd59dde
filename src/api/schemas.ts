// JSON schemas of every API response. fastify compiles them into fast-json-stringify serializers, the OpenAPI
// document is assembled from the same objects, and tests validate responses against them. Nullable fields use
// type arrays rather than anyOf: fast-json-stringify picks an anyOf branch by running a validator per call.
import type { CanaryStatus, DaemonState, DownloadProgress, SkippedRelease } from "../status.ts";

export type JsonSchema = { [key: string]: unknown };

/** What every non-2xx JSON answer carries: a stable code, a human message and what to do next. */
export interface ErrorBody {
  code: string;
  message: string;
  remedy: string | null;
}

/** The answer of an action the daemon carried out for a client (refresh, rollback). */
export interface ActionResult {
  /** false only when result is "failed"; clients exit non-zero on it. */
  ok: boolean;
  result: "ok" | "failed" | "deferred";
  /** One human line: "kata-containers 3.32.0 active and merged". */
  message: string;
  /** The KataError code when it failed. */
  code: string | null;
  remedy: string | null;
  /** The active Kata version after the action. */
  active: string | null;
}

export interface LocalVersion {
  version: string;
  image: string;
  active: boolean;
  /** Rolled back from: passes skip it until the holds are lifted. */
  held: boolean;
}

export interface RemoteVersion {
  version: string;
  /** Whether this version would be chosen for this host and policy; reason says why not. */
  compatible: boolean;
  reason: string | null;
  /** Rolled back from: passes skip it until the holds are lifted. */
  held: boolean;
}

export interface VersionsResult {
  name: string;
  arch: string;
  active: string | null;
  source: string | null;
  local: LocalVersion[];
  remote: RemoteVersion[];
  /** Set when the source could not be listed; local versions are still reported. */
  remoteError: ErrorBody | null;
  /** Releases the last pass skipped because they failed verification or inspection (see StatusDocument). */
  skipped: SkippedRelease[];
}

export interface HealthBody {
  ok: boolean;
  state: DaemonState;
}

export interface ReadyBody {
  ready: boolean;
  /** Why the node is not ready, one entry per unmet condition; empty when ready. */
  reasons: string[];
}

/** One line of a streamed refresh (application/x-ndjson): progress while it runs, then exactly one end line. */
export type RefreshStreamLine =
  | { type: "progress"; state: DaemonState; download: DownloadProgress | null }
  | { type: "result"; result: ActionResult }
  | { type: "error"; error: ErrorBody };

const str = { type: "string" } as const;
const nullableStr = { type: ["string", "null"] } as const;
const bool = { type: "boolean" } as const;
const int = { type: "integer", minimum: 0 } as const;

const object = (properties: Record<string, JsonSchema>, required: string[] = Object.keys(properties)): JsonSchema => ({
  type: "object",
  additionalProperties: false,
  required,
  properties,
});

const nullable = (schema: JsonSchema): JsonSchema => ({ ...schema, type: [schema.type, "null"] });

export const DAEMON_STATES: readonly DaemonState[] = [
  "idle",
  "resolving",
  "fetching",
  "verifying",
  "activating",
  "degraded",
  "error",
];

export const errorBodySchema = object({ code: str, message: str, remedy: nullableStr });

export const preflightCheckSchema = object(
  {
    id: str,
    status: { type: "string", enum: ["pass", "warn", "fail", "skip"] },
    detail: str,
    remedy: nullableStr,
    hypervisor: nullableStr,
  },
  ["id", "status", "detail"],
);

export const preflightSummarySchema = object({
  ok: bool,
  failed: int,
  warnings: int,
  checks: { type: "array", items: preflightCheckSchema },
  hypervisors: { type: "array", items: object({ name: str, ok: bool, verdict: str }) },
});

export const downloadProgressSchema = object({
  file: str,
  bytes: int,
  total: { type: ["integer", "null"], minimum: 0 },
  bytesPerSecond: { type: "number", minimum: 0 },
});

export const skippedReleaseSchema = object({
  member: str,
  version: str,
  file: str,
  reason: str,
  retryAt: { type: ["string", "null"], format: "date-time" },
});

export const canaryStatusSchema = object({
  handler: str,
  runtime: str,
  image: nullableStr,
  at: { type: "string", format: "date-time" },
  durationMs: int,
  outcome: { type: "string", enum: ["passed", "failed"] },
  step: nullableStr,
  reason: nullableStr,
});

export const statusDocumentSchema = object({
  daemon: object({ version: str, startedAt: { type: "string", format: "date-time" }, root: str }),
  host: object({ id: nullableStr, versionId: nullableStr, sysextLevel: nullableStr, arch: str }),
  extension: object({
    name: str,
    active: nullableStr,
    previous: nullableStr,
    merged: bool,
    image: nullableStr,
    trust: nullableStr,
    limitation: nullableStr,
  }),
  nextBoot: nullable(
    object({
      flatcarVersion: str,
      kata: nullableStr,
      staged: bool,
      reason: nullableStr,
      skipped: { type: "array", items: skippedReleaseSchema },
    }),
  ),
  reboot: object({
    requested: bool,
    reason: nullableStr,
    since: { type: ["string", "null"], format: "date-time" },
    sentinel: nullable(object({ path: str, owner: { type: "string", enum: ["kata-sysextd", "other"] } })),
  }),
  members: {
    type: "array",
    items: object({
      name: str,
      active: nullableStr,
      previous: nullableStr,
      nextBoot: nullableStr,
      merged: bool,
      held: { type: "array", items: str },
    }),
  },
  preflight: nullable(preflightSummarySchema),
  lastReconcile: nullable(
    object({
      at: { type: "string", format: "date-time" },
      result: { type: "string", enum: ["ok", "failed", "deferred"] },
      error: nullableStr,
      remedy: nullableStr,
    }),
  ),
  download: nullable(downloadProgressSchema),
  stateDamage: nullable(object({ movedTo: str, remedy: str })),
  skipped: { type: "array", items: skippedReleaseSchema },
  canary: object({ handler: nullableStr, results: { type: "array", items: canaryStatusSchema } }),
  containerd: nullable(
    object({
      base: nullableStr,
      why: nullableStr,
      handlers: {
        type: "array",
        items: object({ name: str, configPath: nullableStr, registered: bool, reason: nullableStr, pinned: bool }),
      },
    }),
  ),
  state: { type: "string", enum: DAEMON_STATES },
});

export const healthSchema = object({ ok: bool, state: { type: "string", enum: DAEMON_STATES } });

export const readySchema = object({ ready: bool, reasons: { type: "array", items: str } });

export const actionResultSchema = object({
  ok: bool,
  result: { type: "string", enum: ["ok", "failed", "deferred"] },
  message: str,
  code: nullableStr,
  remedy: nullableStr,
  active: nullableStr,
});

export const versionsSchema = object({
  name: str,
  arch: str,
  active: nullableStr,
  source: nullableStr,
  local: { type: "array", items: object({ version: str, image: str, active: bool, held: bool }) },
  remote: { type: "array", items: object({ version: str, compatible: bool, reason: nullableStr, held: bool }) },
  remoteError: nullable(errorBodySchema),
  skipped: { type: "array", items: skippedReleaseSchema },
});

/** Every line of the refresh stream; `type` says which of the optional members is set. */
export const refreshStreamLineSchema = object(
  {
    type: { type: "string", enum: ["progress", "result", "error"] },
    state: { type: "string", enum: DAEMON_STATES },
    download: nullable(downloadProgressSchema),
    result: actionResultSchema,
    error: errorBodySchema,
  },
  ["type"],
);

/** One line of POST /v1/canary (application/x-ndjson): the phases as they start, then exactly one end line. */
export type CanaryStreamLine =
  | { type: "progress"; phase: "import" | "start" | "cleanup" }
  | { type: "result"; result: CanaryStatus }
  | { type: "error"; error: ErrorBody };

export const canaryStreamLineSchema = object(
  {
    type: { type: "string", enum: ["progress", "result", "error"] },
    phase: { type: "string", enum: ["import", "start", "cleanup"] },
    result: canaryStatusSchema,
    error: errorBodySchema,
  },
  ["type"],
);

export const metricsTextSchema: JsonSchema = { type: "string", description: "Prometheus text exposition 0.0.4" };

/** Request schema of POST /v1/refresh: ?stream=1 asks for application/x-ndjson progress lines. */
const FLAG = { type: "string", enum: ["0", "1", "true", "false"] };
/** The querystring of a route that takes no parameters. */
export const NO_QUERY = object({}, []);
export const refreshQuerySchema = object({ stream: FLAG, releaseHolds: FLAG }, []);
