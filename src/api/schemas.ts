// JSON schemas of every API response. fastify compiles them into fast-json-stringify serializers, the OpenAPI
// document is assembled from the same objects, and tests validate responses against them. Nullable fields use
// type arrays rather than anyOf: fast-json-stringify picks an anyOf branch by running a validator per call.
import type { FromSchema } from "./schema-type.ts";

export type JsonSchema = { [key: string]: unknown };

const str = { type: "string" } as const;
const nullableStr = { type: ["string", "null"] } as const;
const bool = { type: "boolean" } as const;
const int = { type: "integer", minimum: 0 } as const;

/** A closed object; every property is required unless `required` names fewer. Typed as written, for FromSchema. */
function object<
  const P extends Record<string, JsonSchema>,
  const R extends (keyof P & string)[] = (keyof P & string)[],
>(properties: P, required?: R): { type: "object"; additionalProperties: false; required: R; properties: P } {
  const all = Object.keys(properties) as (keyof P & string)[] as R;
  return { type: "object", additionalProperties: false, required: required ?? all, properties };
}

function nullable<const S extends { type: string }>(schema: S): Omit<S, "type"> & { type: [S["type"], "null"] } {
  return { ...schema, type: [schema.type, "null"] };
}

export const DAEMON_STATES = ["idle", "resolving", "fetching", "verifying", "activating", "degraded", "error"] as const;

/** What every non-2xx JSON answer carries: a stable code, a human message and what to do next. */
export const errorBodySchema = object({ code: str, message: str, remedy: nullableStr });

export const preflightCheckSchema = object(
  {
    id: str,
    status: { type: "string", enum: ["pass", "warn", "fail", "skip"] },
    detail: str,
    remedy: nullableStr,
    // The hypervisor this check is about, when it is hypervisor specific (qemu, clh, fc, …).
    hypervisor: nullableStr,
  },
  ["id", "status", "detail"],
);

export const preflightSummarySchema = object({
  ok: bool,
  failed: int,
  warnings: int,
  checks: { type: "array", items: preflightCheckSchema },
  // One verdict per configured hypervisor: can it run Kata on this host? verdict is one line: "qemu: ready".
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
  // When a pass tries it again; null: never (the same bytes failed inspection).
  retryAt: { type: ["string", "null"], format: "date-time" },
});

/** The last canary of one runtime handler: when it ran, how long it took, and how it ended. */
export const canaryStatusSchema = object({
  handler: str,
  runtime: str,
  // The Kata image (store file) it ran with.
  image: nullableStr,
  at: { type: "string", format: "date-time" },
  durationMs: int,
  outcome: { type: "string", enum: ["passed", "failed"] },
  // Where it failed: image, start, timeout, output or exit; null when it passed.
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
    // "checksum" or "signature": the trust level the active image was verified with.
    trust: nullableStr,
    // Why the merge cannot be confirmed here, e.g. systemd-sysext 252 under --root ignores symlinked images.
    limitation: nullableStr,
  }),
  // An OS update waiting for its reboot, and what was staged for it; `skipped` as below, for that release.
  nextBoot: nullable(
    object({
      flatcarVersion: str,
      kata: nullableStr,
      staged: bool,
      reason: nullableStr,
      skipped: { type: "array", items: skippedReleaseSchema },
    }),
  ),
  // Whether kata-sysextd asks the cluster's reboot coordinator for a reboot (controller/reboot.ts), and why: since
  // when (ISO-8601), and the sentinel file that carries the request, written by kata-sysextd or found there.
  reboot: object({
    requested: bool,
    reason: nullableStr,
    since: { type: ["string", "null"], format: "date-time" },
    sentinel: nullable(object({ path: str, owner: { type: "string", enum: ["kata-sysextd", "other"] } })),
  }),
  // Every managed extension, Kata first (then companions such as cloud-hypervisor); Kata alone without companions.
  members: {
    type: "array",
    items: object({
      name: str,
      active: nullableStr,
      previous: nullableStr,
      // The version staged for the next boot's OS release, or null.
      nextBoot: nullableStr,
      merged: bool,
      // Versions rolled back from: passes skip them until the configuration's [source], [policy] or [[companion]]
      // changes, or `kata-sysextctl refresh --release-holds`.
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
  // state.json and its last good copy were unusable and were moved aside (`movedTo`): the rollback target, holds
  // and next boot were forgotten. Null when not; while set, `state` is "degraded".
  stateDamage: nullable(object({ movedTo: str, remedy: str })),
  // The configuration file as the daemon last read it on a change or reload was rejected (`code`, `message`: the
  // file, line and key), and the daemon runs the one it had; a restart or reboot would read the rejected file.
  // Null when the file is what runs, or a later reload was accepted. While set, `state` is "degraded".
  configRejected: nullable(
    object({ at: { type: "string", format: "date-time" }, code: str, message: str, remedy: nullableStr }),
  ),
  // An activation deferred because Kata sandboxes run (policy.activation "wait" or "next-boot"): the images that
  // wait, the sandboxes counted, since when passes defer, and when policy.max_wait_seconds runs out and a reboot
  // is asked for instead (null: never by itself, "next-boot" asks at once). Null when nothing waits.
  waiting: nullable(
    object({
      members: { type: "array", items: object({ name: str, version: str, file: str }) },
      sandboxes: int,
      since: { type: "string", format: "date-time" },
      rebootAt: { type: ["string", "null"], format: "date-time" },
    }),
  ),
  // Published releases the last pass left out because they failed verification or inspection before, newest
  // first; the node may run an older release than the newest published one because of them.
  skipped: { type: "array", items: skippedReleaseSchema },
  // The canary ([health]): the handler it proves (null when off) and its last result per handler.
  canary: object({ handler: nullableStr, results: { type: "array", items: canaryStatusSchema } }),
  // The last containerd registration: the base it was merged into and why, and every shipped (or pinned) runtime
  // handler: registered, or the reason it is not.
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

/** reasons: why the node is not ready, one entry per unmet condition; empty when ready. */
export const readySchema = object({ ready: bool, reasons: { type: "array", items: str } });

/** The answer of an action the daemon carried out for a client (refresh, rollback). */
export const actionResultSchema = object({
  // false only when result is "failed"; clients exit non-zero on it.
  ok: bool,
  result: { type: "string", enum: ["ok", "failed", "deferred"] },
  // One human line: "kata-containers 3.32.0 active and merged".
  message: str,
  // The KataError code when it failed.
  code: nullableStr,
  remedy: nullableStr,
  // The active Kata version after the action.
  active: nullableStr,
});

export const versionsSchema = object({
  name: str,
  arch: str,
  active: nullableStr,
  source: nullableStr,
  // held: rolled back from, passes skip it until the holds are lifted.
  local: { type: "array", items: object({ version: str, image: str, active: bool, held: bool }) },
  // compatible: whether this version would be chosen for this host and policy; reason says why not.
  remote: { type: "array", items: object({ version: str, compatible: bool, reason: nullableStr, held: bool }) },
  // Set when the source could not be listed; local versions are still reported.
  remoteError: nullable(errorBodySchema),
  // Releases the last pass skipped because they failed verification or inspection (see StatusDocument).
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

// ---- the API's types, derived from the schemas above ----

export type ErrorBody = FromSchema<typeof errorBodySchema>;
export type ActionResult = FromSchema<typeof actionResultSchema>;
export type VersionsResult = FromSchema<typeof versionsSchema>;
export type LocalVersion = VersionsResult["local"][number];
export type RemoteVersion = VersionsResult["remote"][number];
export type HealthBody = FromSchema<typeof healthSchema>;
export type ReadyBody = FromSchema<typeof readySchema>;

// The stream lines are narrower than their schema, which cannot say which member goes with which `type` without
// an anyOf; the check below keeps each line within the schema.
/** One line of a streamed refresh (application/x-ndjson): progress while it runs, then exactly one end line. */
export type RefreshStreamLine =
  | { type: "progress"; state: DaemonState; download: DownloadProgress | null }
  | { type: "result"; result: ActionResult }
  | { type: "error"; error: ErrorBody };

export type CanaryStreamLine =
  | { type: "progress"; phase: "import" | "start" | "cleanup" }
  | { type: "result"; result: CanaryStatus }
  | { type: "error"; error: ErrorBody };

type Within<Narrow extends Wide, Wide> = Narrow;
export type StreamLinesWithinSchemas = [
  Within<RefreshStreamLine, FromSchema<typeof refreshStreamLineSchema>>,
  Within<CanaryStreamLine, FromSchema<typeof canaryStreamLineSchema>>,
];

export type StatusDocument = FromSchema<typeof statusDocumentSchema>;
export type DaemonState = (typeof DAEMON_STATES)[number];
export type PreflightSummary = FromSchema<typeof preflightSummarySchema>;
export type PreflightCheck = FromSchema<typeof preflightCheckSchema>;
export type DownloadProgress = FromSchema<typeof downloadProgressSchema>;
export type SkippedRelease = FromSchema<typeof skippedReleaseSchema>;
export type CanaryStatus = FromSchema<typeof canaryStatusSchema>;
