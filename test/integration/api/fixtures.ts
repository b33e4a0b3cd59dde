// Scripted actions, loggers, temporary folders and the OpenAPI validator the API tests share. The reconciler
// that owns the real actions is not part of the API, so tests drive it through the interface the daemon wires in.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import type { ActionResult, ApiActions, VersionsResult } from "../../../src/api/server.ts";
import { createLogger, type Level, type Logger } from "../../../src/log/logger.ts";
import type { StatusSnapshot } from "../../../src/status.ts";
import { CANARY_PASSED, PREFLIGHT, statusDoc, statusSnapshot } from "./documents.ts";

export { CANARY_PASSED, PREFLIGHT, statusDoc, statusSnapshot };

export const VERSIONS: VersionsResult = {
  name: "kata-containers",
  arch: "x86-64",
  active: "3.32.0",
  source: "https://example.org/extensions/",
  local: [
    {
      version: "3.33.0",
      image: "/var/lib/kata-sysextd/images/kata-containers-3.33.0-x86-64.raw",
      active: false,
      held: true,
    },
    {
      version: "3.32.0",
      image: "/var/lib/kata-sysextd/images/kata-containers-3.32.0-x86-64.raw",
      active: true,
      held: false,
    },
    {
      version: "3.31.0",
      image: "/var/lib/kata-sysextd/images/kata-containers-3.31.0-x86-64.raw",
      active: false,
      held: false,
    },
  ],
  remote: [
    {
      version: "3.33.0",
      compatible: false,
      reason: "held: rolled back from; `kata-sysextctl refresh --release-holds` lifts the hold",
      held: true,
    },
    { version: "3.32.0", compatible: true, reason: null, held: false },
    { version: "3.20.0", compatible: false, reason: 'outside policy.versions ">=3.21.0"', held: false },
  ],
  remoteError: null,
  skipped: [
    {
      member: "kata-containers",
      version: "3.34.0",
      file: "kata-containers-3.34.0-x86-64.raw",
      reason: "SHA-256 does not match SHA256SUMS",
      retryAt: "2026-11-26T19:00:00.000Z",
    },
  ],
};

export const OK_RESULT: ActionResult = {
  ok: true,
  result: "ok",
  message: "kata-containers 3.32.0 active and merged",
  code: null,
  remedy: null,
  active: "3.32.0",
};

/** Holds the current document like the reconciler does: replaced, never mutated. */
/** The daemon's side: the snapshot the API serves /status from, replaced as a daemon replaces it. */
export class StatusHolder {
  doc: StatusSnapshot = statusSnapshot();
  readonly snapshot = (): StatusSnapshot => this.doc;
  set(overrides: Partial<StatusSnapshot>): void {
    this.doc = { ...this.doc, ...overrides };
  }
  /** Replaces Kata's member (members[0]), which /status also shows as `extension`. */
  setKata(overrides: Partial<StatusSnapshot["members"][0]>): void {
    const [kata, ...companions] = this.doc.members;
    this.doc = { ...this.doc, members: [{ ...kata, ...overrides }, ...companions] };
  }
}

export function scriptedActions(overrides: Partial<ApiActions> = {}): ApiActions & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    refresh: async (options) => {
      calls.push(options?.releaseHolds === true ? "refresh releaseHolds" : "refresh");
      return OK_RESULT;
    },
    rollback: async () => {
      calls.push("rollback");
      return { ...OK_RESULT, message: "rolled back to kata-containers 3.31.0", active: "3.31.0" };
    },
    versions: async () => {
      calls.push("versions");
      return VERSIONS;
    },
    preflight: async () => {
      calls.push("preflight");
      return PREFLIGHT;
    },
    canary: async (onPhase) => {
      calls.push("canary");
      onPhase("start");
      return CANARY_PASSED;
    },
    ...overrides,
  };
}

export interface LogRecord {
  level: Level;
  message: string;
}

export function memoryLogger(): Logger & { records: LogRecord[] } {
  const records: LogRecord[] = [];
  const logger = createLogger((level, message) => records.push({ level, message }), "debug");
  return Object.assign(logger, { records });
}

export async function tempRunDir(): Promise<{ dir: string; socketPath: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "kata-api-"));
  return {
    dir,
    socketPath: join(dir, "run", "kata-sysextd", "api.sock"),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * Checks a response against the schema the API's own OpenAPI document declares for it, so a test proves the
 * body, the served schema and the document agree. ajv is fastify's validator (JSON Schema 2020-12 = OpenAPI 3.1).
 */
// ajv-formats is CommonJS with a default export property.
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;

export class OpenApiValidator {
  private readonly ajv = new Ajv2020({ strict: true, strictTypes: false, allErrors: true });
  private readonly compiled = new Map<string, ValidateFunction>();
  private readonly doc: { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };

  constructor(openapi: unknown) {
    addFormats(this.ajv);
    this.doc = openapi as OpenApiValidator["doc"];
  }

  /** Returns ajv's errors as text, or null when the body conforms. Throws when the document has no schema. */
  check(method: string, path: string, status: number, contentType: string, body: unknown): string | null {
    const operation = this.doc.paths[path]?.[method.toLowerCase()];
    if (operation === undefined) throw new Error(`OpenAPI has no ${method} ${path}`);
    const response = (operation.responses[String(status)] ?? operation.responses[`${String(status)[0]}XX`]) as
      | { content: Record<string, { schema: object }> }
      | undefined;
    const mediaType = contentType.split(";")[0]?.trim() ?? "";
    const schema = response?.content[mediaType]?.schema;
    if (schema === undefined) throw new Error(`OpenAPI has no ${status} ${mediaType} schema for ${method} ${path}`);
    const key = `${method} ${path} ${status} ${mediaType}`;
    let validate = this.compiled.get(key);
    if (validate === undefined) {
      validate = this.ajv.compile(schema);
      this.compiled.set(key, validate);
    }
    return validate(body) ? null : this.ajv.errorsText(validate.errors);
  }
}
