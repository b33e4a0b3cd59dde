// The API's types are derived from the schemas it serves (src/api/schema-type.ts). These checks run in the
// typecheck (`tsc --noEmit`, part of `npm test`): a schema and its type that drift apart fail it.
import { describe, expect, expectTypeOf, it } from "vitest";
import type { FromSchema } from "../../../src/api/schema-type.ts";
import {
  type ActionResult,
  actionResultSchema,
  type ErrorBody,
  type PreflightCheck,
  type StatusDocument,
  type statusDocumentSchema,
  type VersionsResult,
} from "../../../src/api/schemas.ts";
import { statusDoc } from "../../integration/api/documents.ts";

/** The status document as it was written by hand beside the schema, before the type was derived from it. */
interface HandWrittenStatusDocument {
  daemon: { version: string; startedAt: string; root: string };
  host: { id: string | null; versionId: string | null; sysextLevel: string | null; arch: string };
  extension: {
    name: string;
    active: string | null;
    previous: string | null;
    merged: boolean;
    image: string | null;
    trust: string | null;
    limitation: string | null;
  };
  nextBoot: null | {
    flatcarVersion: string;
    kata: string | null;
    staged: boolean;
    reason: string | null;
    skipped: { member: string; version: string; file: string; reason: string; retryAt: string | null }[];
  };
  reboot: {
    requested: boolean;
    reason: string | null;
    since: string | null;
    sentinel: { path: string; owner: "kata-sysextd" | "other" } | null;
  };
  members: {
    name: string;
    active: string | null;
    previous: string | null;
    nextBoot: string | null;
    merged: boolean;
    held: string[];
  }[];
  preflight: {
    ok: boolean;
    failed: number;
    warnings: number;
    checks: {
      id: string;
      status: "pass" | "warn" | "fail" | "skip";
      detail: string;
      remedy?: string | null;
      hypervisor?: string | null;
    }[];
    hypervisors: { name: string; ok: boolean; verdict: string }[];
  } | null;
  lastReconcile: null | {
    at: string;
    result: "ok" | "failed" | "deferred";
    error: string | null;
    remedy: string | null;
  };
  download: { file: string; bytes: number; total: number | null; bytesPerSecond: number } | null;
  stateDamage: null | { movedTo: string; remedy: string };
  configRejected: null | { at: string; code: string; message: string; remedy: string | null };
  waiting: null | {
    members: { name: string; version: string; file: string }[];
    sandboxes: number;
    since: string;
    rebootAt: string | null;
  };
  skipped: { member: string; version: string; file: string; reason: string; retryAt: string | null }[];
  canary: {
    handler: string | null;
    results: {
      handler: string;
      runtime: string;
      image: string | null;
      at: string;
      durationMs: number;
      outcome: "passed" | "failed";
      step: string | null;
      reason: string | null;
    }[];
  };
  containerd: {
    base: string | null;
    why: string | null;
    handlers: {
      name: string;
      configPath: string | null;
      registered: boolean;
      reason: string | null;
      pinned: boolean;
    }[];
  } | null;
  state: "idle" | "resolving" | "fetching" | "verifying" | "activating" | "degraded" | "error";
}

describe("types derived from the API's schemas", () => {
  it("StatusDocument is exactly the document the schema describes, as it was written by hand", () => {
    expectTypeOf<StatusDocument>().toEqualTypeOf<HandWrittenStatusDocument>();
    expectTypeOf<FromSchema<typeof statusDocumentSchema>>().toEqualTypeOf<StatusDocument>();
    // A document the fixtures build is one, at run time too.
    expect(statusDoc() satisfies HandWrittenStatusDocument).toHaveProperty("members");
  });

  it("the action results and bodies too: required fields, nullable ones, enums and optional ones", () => {
    expectTypeOf<ActionResult>().toEqualTypeOf<{
      ok: boolean;
      result: "ok" | "failed" | "deferred";
      message: string;
      code: string | null;
      remedy: string | null;
      active: string | null;
    }>();
    expectTypeOf<ErrorBody>().toEqualTypeOf<{ code: string; message: string; remedy: string | null }>();
    expectTypeOf<PreflightCheck["remedy"]>().toEqualTypeOf<string | null | undefined>();
    expectTypeOf<VersionsResult["remoteError"]>().toEqualTypeOf<ErrorBody | null>();
    expect(actionResultSchema.required).toEqual(["ok", "result", "message", "code", "remedy", "active"]);
  });

  it("a field the schema does not know, or one it requires and the code leaves out, is a type error", () => {
    const { state: _state, ...withoutState } = statusDoc();
    // @ts-expect-error state is required by the schema
    const missing: StatusDocument = withoutState;
    // @ts-expect-error the schema has no field "uptime"
    const extra: StatusDocument = { ...statusDoc(), uptime: 1 };
    expect([missing, extra].map((d) => "state" in d)).toEqual([false, true]);
  });

  it("FromSchema maps each keyword it covers", () => {
    expectTypeOf<FromSchema<{ type: ["integer", "null"] }>>().toEqualTypeOf<number | null>();
    expectTypeOf<FromSchema<{ type: "string"; enum: readonly ["a", "b"] }>>().toEqualTypeOf<"a" | "b">();
    expectTypeOf<FromSchema<{ type: "array"; items: { type: "boolean" } }>>().toEqualTypeOf<boolean[]>();
    expectTypeOf<
      FromSchema<{ type: "object"; required: ["a"]; properties: { a: { type: "string" }; b: { type: "number" } } }>
    >().toEqualTypeOf<{ a: string; b?: number }>();
  });
});
