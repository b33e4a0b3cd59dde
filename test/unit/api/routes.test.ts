// Pure parts of the API: readiness from a status document, listen-address parsing, the OpenAPI document, and
// the status schema as a complete description of StatusDocument.
import { describe, expect, it } from "vitest";
import { parseListen } from "../../../src/api/listen.ts";
import { createMetrics } from "../../../src/api/metrics.ts";
import { openApiDocument } from "../../../src/api/openapi.ts";
import { readiness, routes, statusDocument } from "../../../src/api/routes.ts";
import { statusDocumentSchema } from "../../../src/api/schemas.ts";
import type { StatusSnapshot } from "../../../src/status.ts";
import {
  CANARY_PASSED,
  OpenApiValidator,
  PREFLIGHT,
  scriptedActions,
  statusDoc,
  statusSnapshot,
} from "../../integration/api/fixtures.ts";

describe("readiness", () => {
  const [kata] = statusSnapshot().members;
  const companion = {
    name: "cloud-hypervisor",
    active: null,
    previous: null,
    nextBoot: null,
    merged: false,
    held: [],
    image: null,
    trust: null,
  };
  const limitation = "systemd-sysext 252 ignores symlinks under --root";
  const cases: Array<[string, Partial<StatusSnapshot>, string[]]> = [
    ["active, merged, preflight ok", {}, []],
    ["a warning does not block", { preflight: { ...PREFLIGHT, warnings: 3 } }, []],
    [
      "nothing active",
      { members: [{ ...kata, active: null, merged: false, image: null, trust: null }] },
      ["no kata-containers image is active"],
    ],
    ["not merged", { members: [{ ...kata, merged: false }] }, ["kata-containers 3.32.0 is active but not merged"]],
    [
      "not merged where merges cannot be confirmed: every member says why",
      {
        members: [
          { ...kata, merged: false },
          { ...companion, active: "44.0" },
        ],
        limitation,
      },
      [
        `kata-containers 3.32.0 is active but not merged (${limitation})`,
        `cloud-hypervisor 44.0 is active but not merged (${limitation})`,
      ],
    ],
    ["no preflight yet", { preflight: null }, ["preflight has not run yet"]],
    [
      "failed checks named",
      {
        preflight: {
          ok: false,
          failed: 2,
          warnings: 0,
          checks: [
            { id: "kvm-usable", status: "fail", detail: "" },
            { id: "vhost-vsock", status: "fail", detail: "" },
          ],
          hypervisors: [],
        },
      },
      ["preflight failed: kvm-usable, vhost-vsock"],
    ],
    ["the canary off", { canary: { handler: null, results: [] } }, []],
    [
      "a companion active and merged",
      { members: [...statusSnapshot().members, { ...companion, active: "44.0", merged: true }] },
      [],
    ],
    [
      "a companion with nothing active",
      { members: [...statusSnapshot().members, companion] },
      ["no cloud-hypervisor image is active"],
    ],
    [
      "a companion active but not merged",
      { members: [...statusSnapshot().members, { ...companion, active: "44.0" }] },
      ["cloud-hypervisor 44.0 is active but not merged"],
    ],
    [
      "no canary yet for the active image",
      { canary: { handler: "kata", results: [] } },
      ["the canary has not run with kata for kata-containers-3.32.0-x86-64.raw yet"],
    ],
    [
      "the last canary ran with another image",
      { canary: { handler: "kata", results: [{ ...CANARY_PASSED, image: "kata-containers-3.31.0-x86-64.raw" }] } },
      ["the canary has not run with kata for kata-containers-3.32.0-x86-64.raw yet"],
    ],
    [
      "the canary failed",
      {
        canary: {
          handler: "kata",
          results: [{ ...CANARY_PASSED, outcome: "failed", step: "timeout", reason: "no exit within 60 s" }],
        },
      },
      ["the canary failed with kata at timeout: no exit within 60 s"],
    ],
    [
      "only the configured handler's canary counts",
      { canary: { handler: "kata", results: [{ ...CANARY_PASSED, handler: "io.containerd.runc.v2" }] } },
      ["the canary has not run with kata for kata-containers-3.32.0-x86-64.raw yet"],
    ],
  ];
  it.each(cases)("%s", (_name, overrides, reasons) => {
    expect(readiness(statusSnapshot(overrides))).toEqual({ ready: reasons.length === 0, reasons });
  });
});

describe("statusDocument: Kata's extension block and next-boot version are read off members[0]", () => {
  const [kata] = statusSnapshot().members;
  const ch = {
    name: "cloud-hypervisor",
    active: "v53.0",
    previous: "v52.0",
    nextBoot: "v54.0",
    merged: false,
    held: [],
    image: "/var/lib/kata-sysextd/images/cloud-hypervisor-v53.0-x86-64.raw",
    trust: "signature",
  };
  it("the daemon's snapshot is the API tests' document", () => {
    expect(statusDocument(statusSnapshot())).toEqual(statusDoc());
  });
  it.each<[string, Partial<StatusSnapshot>, Partial<ReturnType<typeof statusDoc>>]>([
    [
      "nothing active yet",
      { members: [{ ...kata, active: null, previous: null, merged: false, image: null, trust: null }] },
      {
        extension: {
          name: kata.name,
          active: null,
          previous: null,
          merged: false,
          image: null,
          trust: null,
          limitation: null,
        },
      },
    ],
    [
      "a companion changes nothing in Kata's block",
      { members: [kata, ch], limitation: "systemd-sysext 252" },
      { extension: { ...statusDoc().extension, limitation: "systemd-sysext 252" } },
    ],
    [
      "the next boot's Kata is what is staged for members[0]",
      { members: [{ ...kata, nextBoot: "3.33.0" }, ch] },
      { nextBoot: { flatcarVersion: "4650.0.0", kata: "3.33.0", staged: true, reason: null, skipped: [] } },
    ],
    [
      "nothing staged for Kata",
      {
        members: [{ ...kata, nextBoot: null }],
        nextBoot: { flatcarVersion: "4650.0.0", staged: false, reason: null, skipped: [] },
      },
      { nextBoot: { flatcarVersion: "4650.0.0", kata: null, staged: false, reason: null, skipped: [] } },
    ],
    ["no OS update pending", { nextBoot: null }, { nextBoot: null }],
  ])("%s", (_, snapshot, expected) => {
    expect(statusDocument(statusSnapshot(snapshot))).toMatchObject(expected);
  });
  it("members are shown as the schema has them: without the image and trust the snapshot keeps", () => {
    expect(statusDocument(statusSnapshot({ members: [kata, ch] })).members).toEqual([
      statusDoc().members[0],
      { name: ch.name, active: "v53.0", previous: "v52.0", nextBoot: "v54.0", merged: false, held: [] },
    ]);
  });
});

describe("parseListen", () => {
  it.each([
    ["127.0.0.1:8720", { host: "127.0.0.1", port: 8720 }],
    ["localhost:8720", { host: "127.0.0.1", port: 8720 }],
    ["[::1]:9000", { host: "::1", port: 9000 }],
    ["127.0.0.1:0", { host: "127.0.0.1", port: 0 }],
  ])("%s", (listen, expected) => {
    expect(parseListen(listen)).toEqual(expected);
  });

  it.each(["0.0.0.0:8720", "10.0.0.1:8720", "127.0.0.1:65536", "127.0.0.1", ":8720", "[::]:8720", "localhost:-1"])(
    "refuses %s",
    (listen) => {
      expect(() => parseListen(listen)).toThrow(expect.objectContaining({ code: "api-failed" }));
    },
  );
});

describe("schemas and OpenAPI", () => {
  const specs = routes({
    snapshot: () => statusSnapshot(),
    metrics: createMetrics({ processMetrics: false }),
    actions: scriptedActions(),
    progressIntervalMs: 100,
    openapi: () => null,
  });

  it("requires every field of StatusDocument, at every level", () => {
    const keysOf = (v: unknown): string[] =>
      typeof v === "object" && v !== null && !Array.isArray(v) ? Object.keys(v).sort() : [];
    const doc = statusDoc({ download: { file: "f", bytes: 1, total: 2, bytesPerSecond: 3 } });
    const props = statusDocumentSchema.properties as Record<string, { properties?: object; required?: string[] }>;
    expect((statusDocumentSchema.required as string[]).sort()).toEqual(keysOf(doc));
    for (const [key, value] of Object.entries(doc)) {
      if (keysOf(value).length === 0) continue;
      expect([...(props[key]?.required ?? [])].sort(), key).toEqual(keysOf(value));
    }
  });

  it("validates good documents and rejects broken ones", () => {
    const validator = new OpenApiValidator(openApiDocument(specs, "socket", "0.1.0"));
    const check = (body: unknown) => validator.check("GET", "/status", 200, "application/json", body);
    expect(check(statusDoc())).toBeNull();
    expect(check(statusDoc({ nextBoot: null, preflight: null, lastReconcile: null }))).toBeNull();
    expect(check({ ...statusDoc(), state: "sleeping" })).toMatch(/state/);
    expect(check({ ...statusDoc(), extra: 1 })).toMatch(/additional/);
    const { nextBoot: _omitted, ...missing } = statusDoc();
    expect(check(missing)).toMatch(/nextBoot/);
  });

  it("documents each listener's routes with operation ids and error responses", () => {
    const tcp = openApiDocument(specs, "tcp", "0.1.0") as {
      paths: Record<string, Record<string, { operationId: string; responses: Record<string, unknown> }>>;
    };
    expect(Object.keys(tcp.paths)).not.toContain("/v1/refresh");
    expect(tcp.paths["/status"]?.get?.operationId).toBe("getStatus");
    expect(Object.keys(tcp.paths["/status"]?.get?.responses ?? {})).toEqual(["200", "4XX", "5XX"]);
    const socket = openApiDocument(specs, "socket", "0.1.0") as typeof tcp;
    expect(socket.paths["/v1/refresh"]?.post?.operationId).toBe("postV1Refresh");
  });
});
