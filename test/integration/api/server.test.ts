// The API started in-process on a free loopback port and a temporary unix socket, driven by real HTTP
// clients (fetch and node:http): every route, schema conformance, the TCP guards and the socket's permissions.
import { spawnSync } from "node:child_process";
import { chmod, lstat, mkdir, stat, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { dirname } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type Endpoint, request, streamLines } from "../../../src/api/client.ts";
import { createMetrics } from "../../../src/api/metrics.ts";
import { type ApiHandle, type ApiOptions, startApi } from "../../../src/api/server.ts";
import { KataError } from "../../../src/errors.ts";
import type { StatusDocument } from "../../../src/status.ts";
import {
  memoryLogger,
  OpenApiValidator,
  PREFLIGHT,
  StatusHolder,
  scriptedActions,
  statusDoc,
  statusSnapshot,
  tempRunDir,
} from "./fixtures.ts";

interface Started {
  api: ApiHandle;
  holder: StatusHolder;
  actions: ReturnType<typeof scriptedActions>;
  log: ReturnType<typeof memoryLogger>;
  tcp: Endpoint & { url: string };
  socket: Endpoint & { socketPath: string };
  base: string;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(overrides: Partial<ApiOptions> = {}): Promise<Started> {
  const run = await tempRunDir();
  cleanups.push(run.cleanup);
  const holder = new StatusHolder();
  const actions = scriptedActions();
  const log = memoryLogger();
  const api = await startApi({
    listen: "127.0.0.1:0",
    socketPath: run.socketPath,
    snapshot: holder.snapshot,
    metrics: createMetrics(),
    actions,
    log,
    progressIntervalMs: 10,
    ...overrides,
  });
  cleanups.push(api.close);
  const base = `http://${api.tcpAddresses[0]}`;
  const socketPath = overrides.socketPath ?? run.socketPath;
  return { api, holder, actions, log, tcp: { url: base }, socket: { socketPath }, base };
}

const READ_ROUTES = ["/status", "/healthz", "/readyz", "/preflight", "/metrics", "/openapi.json"];

async function openApiOf(endpoint: Endpoint): Promise<OpenApiValidator> {
  const res = await request(endpoint, "GET", "/openapi.json");
  return new OpenApiValidator(JSON.parse(res.body));
}

function bodyOf(res: { contentType: string; body: string }): unknown {
  return res.contentType.startsWith("application/json") ? JSON.parse(res.body) : res.body;
}

describe("read-only routes", () => {
  it("serves every GET route on TCP (fetch) and on the socket, each response conforming to its schema", async () => {
    const s = await start();
    const validator = await openApiOf(s.socket);
    for (const path of READ_ROUTES) {
      const viaFetch = await fetch(`${s.base}${path}`);
      const text = await viaFetch.text();
      expect(viaFetch.status, path).toBe(200);
      const contentType = viaFetch.headers.get("content-type") ?? "";
      const body = contentType.startsWith("application/json") ? JSON.parse(text) : text;
      expect(validator.check("GET", path, 200, contentType, body), path).toBeNull();

      const viaSocket = await request(s.socket, "GET", path);
      expect(viaSocket.status, path).toBe(200);
      expect(validator.check("GET", path, 200, viaSocket.contentType, bodyOf(viaSocket)), path).toBeNull();
    }
  });

  it("/status is the snapshot, serialized by its schema, and follows every replacement of the document", async () => {
    const s = await start();
    const first = await (await fetch(`${s.base}/status`)).json();
    expect(first).toEqual(statusDoc());

    s.holder.set({
      state: "fetching",
      download: { file: "kata-containers-3.33.0-x86-64.raw", bytes: 1024, total: 4096, bytesPerSecond: 512 },
    });
    const second = (await (await fetch(`${s.base}/status`)).json()) as StatusDocument;
    expect(second.state).toBe("fetching");
    expect(second.download).toEqual(s.holder.doc.download);

    // The schema decides what goes out: a field the contract does not know is not serialized.
    s.holder.doc = { ...statusSnapshot(), secret: "not in the schema" } as ReturnType<typeof statusSnapshot>;
    const third = (await (await fetch(`${s.base}/status`)).json()) as Record<string, unknown>;
    expect(third.secret).toBeUndefined();
    expect(third.state).toBe("idle");
  });

  it("/status answers from memory alone: a snapshot that counts calls is read once per request", async () => {
    let calls = 0;
    const holder = new StatusHolder();
    const s = await start({
      snapshot: () => {
        calls++;
        return holder.doc;
      },
    });
    const before = calls;
    await fetch(`${s.base}/status`);
    await fetch(`${s.base}/status`);
    expect(calls - before).toBe(2);
  });

  it("/readyz is 200 only when active, merged and preflight has no failure; 503 says why otherwise", async () => {
    const s = await start();
    const validator = await openApiOf(s.tcp);
    const readyz = async (): Promise<{ status: number; body: { ready: boolean; reasons: string[] } }> => {
      const res = await request(s.tcp, "GET", "/readyz");
      const body = JSON.parse(res.body);
      expect(validator.check("GET", "/readyz", res.status, res.contentType, body)).toBeNull();
      return { status: res.status, body };
    };
    expect(await readyz()).toEqual({ status: 200, body: { ready: true, reasons: [] } });

    const kata = s.holder.doc.members[0];
    s.holder.setKata({ merged: false });
    s.holder.set({ limitation: "systemd-sysext 252 ignores symlinks" });
    let r = await readyz();
    expect(r.status).toBe(503);
    expect(r.body.reasons).toEqual([
      "kata-containers 3.32.0 is active but not merged (systemd-sysext 252 ignores symlinks)",
    ]);

    s.holder.setKata({ active: null });
    s.holder.set({ limitation: null, preflight: null });
    r = await readyz();
    expect(r.status).toBe(503);
    expect(r.body.reasons).toEqual(["no kata-containers image is active", "preflight has not run yet"]);

    const failing = { ...PREFLIGHT, ok: false, failed: 1 };
    failing.checks = [...PREFLIGHT.checks, { id: "kvm-usable-2", status: "fail", detail: "no /dev/kvm" }];
    s.holder.setKata(kata);
    s.holder.set({ preflight: failing });
    r = await readyz();
    expect(r.status).toBe(503);
    expect(r.body.reasons).toEqual(["preflight failed: kvm-usable-2"]);
  });

  it("/preflight answers 503 with a remedy until a preflight has run", async () => {
    const s = await start();
    s.holder.set({ preflight: null });
    const res = await request(s.tcp, "GET", "/preflight");
    expect(res.status).toBe(503);
    const validator = await openApiOf(s.tcp);
    const body = JSON.parse(res.body);
    expect(validator.check("GET", "/preflight", 503, res.contentType, body)).toBeNull();
    expect(body.code).toBe("preflight-pending");
  });

  it("/metrics is Prometheus text 0.0.4 derived from the snapshot at scrape time", async () => {
    const s = await start();
    s.holder.set({
      nextBoot: { flatcarVersion: "4650.0.0", staged: false, reason: "no compatible kata", skipped: [] },
    });
    s.holder.setKata({ nextBoot: null });
    const res = await fetch(`${s.base}/metrics`);
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const text = await res.text();
    expect(text).toContain('kata_sysextd_kata_active_info{name="kata-containers",version="3.32.0",trust="checksum"} 1');
    expect(text).toContain(
      'kata_sysextd_host_info{id="flatcar",version_id="4593.2.5",sysext_level="1.0",arch="x86-64"} 1',
    );
    expect(text).toContain("kata_sysextd_next_boot_pending 1");
    expect(text).toContain("kata_sysextd_next_boot_staged 0");
    expect(text).toContain("process_resident_memory_bytes");
  });

  it("HEAD works on every read route", async () => {
    const s = await start();
    for (const path of READ_ROUTES) {
      const res = await fetch(`${s.base}${path}`, { method: "HEAD" });
      expect(res.status, path).toBe(200);
    }
  });

  it("the TCP OpenAPI document lists only the read routes; the socket's lists the mutations too", async () => {
    const s = await start();
    const tcpDoc = JSON.parse((await request(s.tcp, "GET", "/openapi.json")).body);
    const socketDoc = JSON.parse((await request(s.socket, "GET", "/openapi.json")).body);
    expect(tcpDoc.openapi).toBe("3.1.0");
    expect(Object.keys(tcpDoc.paths).sort()).toEqual([...READ_ROUTES].sort());
    expect(Object.keys(socketDoc.paths).sort()).toEqual(
      [...READ_ROUTES, "/v1/canary", "/v1/preflight", "/v1/refresh", "/v1/rollback", "/v1/versions"].sort(),
    );
  });
});

describe("TCP guards", () => {
  it("answers every mutating method with 405 and an Allow header, on known and unknown paths", async () => {
    const s = await start();
    const validator = await openApiOf(s.tcp);
    for (const method of ["POST", "PUT", "PATCH", "DELETE"]) {
      for (const path of ["/status", "/v1/refresh", "/v1/rollback", "/nowhere"]) {
        const res = await fetch(`${s.base}${path}`, {
          method,
          body: "{}",
          headers: { "content-type": "application/json" },
        });
        expect(res.status, `${method} ${path}`).toBe(405);
        expect(res.headers.get("allow")).toBe("GET, HEAD");
        const body = (await res.json()) as { code: string };
        expect(body.code).toBe("method-not-allowed");
        expect(validator.check("GET", "/status", 405, res.headers.get("content-type") ?? "", body)).toBeNull();
      }
    }
    expect(s.actions.calls).toEqual([]);
  });

  it("does not serve the socket's GET /v1/versions on TCP", async () => {
    const s = await start();
    const res = await fetch(`${s.base}/v1/versions`);
    expect(res.status).toBe(404);
    expect(s.actions.calls).toEqual([]);
  });

  it("answers 403 to a foreign Host header (DNS rebinding) and accepts the loopback names with or without port", async () => {
    const s = await start();
    const port = new URL(s.base).port;
    for (const host of [
      "evil.example",
      "evil.example:8720",
      "127.0.0.2",
      "localhost.evil.example",
      "[::2]",
      "0.0.0.0",
    ]) {
      const res = await request(s.tcp, "GET", "/status", { headers: { host } });
      expect(res.status, host).toBe(403);
      expect(JSON.parse(res.body).code).toBe("forbidden-host");
    }
    for (const host of [
      "localhost",
      `localhost:${port}`,
      "127.0.0.1",
      `127.0.0.1:${port}`,
      "[::1]",
      `[::1]:${port}`,
      "LOCALHOST",
    ]) {
      const res = await request(s.tcp, "GET", "/status", { headers: { host } });
      expect(res.status, host).toBe(200);
    }
  });

  it("names the address [api] listen bound in the 403's remedy, not the default port", async () => {
    const s = await start();
    const port = new URL(s.base).port;
    const res = await request(s.tcp, "GET", "/status", { headers: { host: "evil.com" } });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toEqual({
      code: "forbidden-host",
      message: "requests must name localhost, 127.0.0.1 or [::1] in the Host header",
      remedy: `use http://127.0.0.1:${port}/ or http://localhost:${port}/`,
    });
  });

  it("checks the authority of an absolute-form target too, which wins over the Host header", async () => {
    const s = await start();
    const { hostname, port } = new URL(s.base);
    const raw = (target: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const socket = connect(Number(port), hostname);
        let answer = "";
        socket.on("data", (d: Buffer) => {
          answer += d.toString("latin1");
        });
        socket.on("error", reject);
        socket.on("end", () => resolve(answer.split("\r\n")[0] ?? ""));
        socket.write(`GET ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
      });
    expect(await raw("http://evil.example/status")).toBe("HTTP/1.1 403 Forbidden");
    expect(await raw(`http://evil.example:${port}/status`)).toBe("HTTP/1.1 403 Forbidden");
    expect(await raw(`http://127.0.0.1:${port}/status`)).toBe("HTTP/1.1 200 OK");
    expect(await raw("/status")).toBe("HTTP/1.1 200 OK");
  });

  it("answers unknown paths with a JSON 404", async () => {
    const s = await start();
    const res = await fetch(`${s.base}/etc/passwd`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: "not-found", remedy: "GET /openapi.json lists the routes" });
  });

  it("also listens on [::1] with the same port when the configured address is 127.0.0.1", async () => {
    const s = await start();
    const port = new URL(s.base).port;
    expect(s.api.tcpAddresses).toEqual([`127.0.0.1:${port}`, `[::1]:${port}`]);
    const res = await fetch(`http://[::1]:${port}/healthz`);
    expect(res.status).toBe(200);
  });

  it("serves the unix socket only when listen is null", async () => {
    const s = await start({ listen: null });
    expect(s.api.tcpAddresses).toEqual([]);
    expect((await request(s.socket, "GET", "/healthz")).status).toBe(200);
  });
});

describe("unix socket", () => {
  it("is a socket of mode 0600 in a 0700 folder", async () => {
    const s = await start();
    const sock = await lstat(s.socket.socketPath);
    expect(sock.isSocket()).toBe(true);
    expect(sock.mode & 0o777).toBe(0o600);
    expect(sock.uid).toBe(process.getuid?.());
    expect((await stat(dirname(s.socket.socketPath))).mode & 0o777).toBe(0o700);
  });

  it("runs refresh, rollback, versions and preflight, each answer conforming to its schema", async () => {
    const s = await start();
    const validator = await openApiOf(s.socket);
    for (const [method, path] of [
      ["POST", "/v1/refresh"],
      ["POST", "/v1/rollback"],
      ["GET", "/v1/versions"],
      ["POST", "/v1/preflight"],
    ] as const) {
      const res = await request(s.socket, method, path);
      expect(res.status, path).toBe(200);
      expect(validator.check(method, path, 200, res.contentType, JSON.parse(res.body)), path).toBeNull();
    }
    expect(s.actions.calls).toEqual(["refresh", "rollback", "versions", "preflight"]);
  });

  it("checks refresh's query against its schema: unknown or out-of-enum parameters are a 400", async () => {
    const s = await start();
    for (const query of ["?stream=maybe", "?force=1", "?stream=1&stream=1"]) {
      const res = await request(s.socket, "POST", `/v1/refresh${query}`);
      expect(res.status, query).toBe(400);
      expect(JSON.parse(res.body).code).toBe("bad-request");
    }
    expect(s.actions.calls).toEqual([]);
    expect((await request(s.socket, "POST", "/v1/refresh?stream=0")).status).toBe(200);
    expect(s.actions.calls).toEqual(["refresh"]);
    expect((await request(s.socket, "POST", "/v1/refresh?releaseHolds=1")).status).toBe(200);
    expect(s.actions.calls).toEqual(["refresh", "refresh releaseHolds"]);
  });

  it("refuses parameters on routes that take none, naming the parameter", async () => {
    const s = await start();
    for (const path of READ_ROUTES) {
      const res = await fetch(`${s.base}${path}?verbose=1`);
      expect(res.status, path).toBe(400);
      const body = (await res.json()) as { code: string; message: string };
      expect(body.code, path).toBe("bad-request");
      expect(body.message, path).toContain('unknown parameter "verbose"');
      expect((await fetch(`${s.base}${path}`)).status, path).not.toBe(400);
    }
  });

  it("answers a wrong method on a known path with 405 listing what it allows", async () => {
    const s = await start();
    const res = await request(s.socket, "GET", "/v1/refresh");
    expect(res.status).toBe(405);
    const del = await request(s.socket, "DELETE", "/status");
    expect(del.status).toBe(405);
    expect(s.actions.calls).toEqual([]);
  });

  it("streams refresh progress as ndjson lines, then the outcome", async () => {
    const holder = new StatusHolder();
    let finish: () => void = () => undefined;
    const s = await start({
      snapshot: holder.snapshot,
      actions: scriptedActions({
        refresh: async () => {
          holder.set({ state: "fetching" });
          for (const bytes of [0, 1024, 2048, 4096]) {
            holder.set({ download: { file: "k.raw", bytes, total: 4096, bytesPerSecond: 1024 } });
            await new Promise<void>((resolve) => {
              finish = resolve;
              setTimeout(resolve, 40);
            });
          }
          holder.set({ state: "idle", download: null });
          return { ok: true, result: "ok", message: "done", code: null, remedy: null, active: "3.33.0" };
        },
      }),
    });
    const validator = await openApiOf(s.socket);
    const lines: unknown[] = [];
    const status = await streamLines(s.socket, "POST", "/v1/refresh?stream=1", {
      onLine: (line) => lines.push(line),
      onBody: () => undefined,
    });
    finish();
    expect(status).toBe(200);
    for (const line of lines) {
      expect(validator.check("POST", "/v1/refresh", 200, "application/x-ndjson", line)).toBeNull();
    }
    const progress = lines.filter((l) => (l as { type: string }).type === "progress") as Array<{
      download: { bytes: number } | null;
    }>;
    const seenBytes = progress.map((p) => p.download?.bytes).filter((b) => b !== undefined);
    expect(seenBytes).toEqual([...new Set(seenBytes)].sort((a, b) => (a ?? 0) - (b ?? 0)));
    expect(seenBytes).toContain(4096);
    expect(lines.at(-1)).toEqual({
      type: "result",
      result: { ok: true, result: "ok", message: "done", code: null, remedy: null, active: "3.33.0" },
    });
  });

  it("keeps refreshing when the streaming client goes away, and keeps serving", async () => {
    let done: (value: unknown) => void = () => undefined;
    const finished = new Promise((resolve) => {
      done = resolve;
    });
    const s = await start({
      actions: scriptedActions({
        refresh: async () => {
          await new Promise((resolve) => setTimeout(resolve, 100));
          done(true);
          return { ok: true, result: "ok", message: "done", code: null, remedy: null, active: "3.32.0" };
        },
      }),
    });
    await new Promise<void>((resolve) => {
      const req = httpRequest({ socketPath: s.socket.socketPath, method: "POST", path: "/v1/refresh?stream=1" });
      req.on("response", (res) => {
        res.once("data", () => {
          req.destroy();
          resolve();
        });
      });
      req.end();
    });
    expect(await finished).toBe(true);
    expect((await request(s.socket, "GET", "/healthz")).status).toBe(200);
    expect(s.log.records.filter((r) => r.level === "error")).toEqual([]);
  });

  it("answers JSON when ?stream=0 overrides an ndjson Accept header", async () => {
    const s = await start();
    const res = await request(s.socket, "POST", "/v1/refresh?stream=0", {
      headers: { accept: "application/x-ndjson" },
    });
    expect(res.status).toBe(200);
    expect(res.contentType).toBe("application/json; charset=utf-8");
    expect(JSON.parse(res.body).ok).toBe(true);
  });

  it("ends a stream whose refresh threw with an error line carrying code and remedy", async () => {
    const s = await start({
      actions: scriptedActions({
        refresh: async () => {
          throw new KataError("fetch-failed", "example.org unreachable", { remedy: "check the network" });
        },
      }),
    });
    const lines: unknown[] = [];
    await streamLines(s.socket, "POST", "/v1/refresh?stream=1", {
      onLine: (l) => lines.push(l),
      onBody: () => undefined,
    });
    expect(lines.at(-1)).toEqual({
      type: "error",
      error: { code: "fetch-failed", message: "example.org unreachable", remedy: "check the network" },
    });
  });

  it("turns an action that throws into a 500 with the error's code and remedy, and logs it once", async () => {
    const s = await start({
      actions: scriptedActions({
        rollback: async () => {
          throw new KataError("activation-failed", "no previous image", { remedy: "kata-sysextctl versions" });
        },
      }),
    });
    const res = await request(s.socket, "POST", "/v1/rollback");
    expect(res.status).toBe(500);
    expect(JSON.parse(res.body)).toEqual({
      code: "activation-failed",
      message: "no previous image",
      remedy: "kata-sysextctl versions",
    });
    expect(s.log.records.filter((r) => r.level === "error")).toHaveLength(1);
  });

  it("replaces a stale socket left by a dead daemon", async () => {
    const run = await tempRunDir();
    cleanups.push(run.cleanup);
    await mkdir(dirname(run.socketPath), { recursive: true, mode: 0o700 });
    // A daemon killed with SIGKILL leaves its socket file behind with nobody listening.
    const killed = spawnSync(process.execPath, [
      "-e",
      `require("node:net").createServer().listen(${JSON.stringify(run.socketPath)}, () => process.kill(process.pid, "SIGKILL"))`,
    ]);
    expect(killed.signal).toBe("SIGKILL");
    expect((await lstat(run.socketPath)).isSocket()).toBe(true);

    const s = await start({ socketPath: run.socketPath });
    expect((await request(s.socket, "GET", "/healthz")).status).toBe(200);
  });

  it("refuses a socket path held by a running daemon, and one that is not a socket", async () => {
    const first = await start();
    const second = start({ socketPath: first.socket.socketPath, listen: null });
    await expect(second).rejects.toMatchObject({
      code: "api-failed",
      message: expect.stringContaining("already serving"),
    });
    expect((await request(first.socket, "GET", "/healthz")).status).toBe(200);

    const run = await tempRunDir();
    cleanups.push(run.cleanup);
    await mkdir(dirname(run.socketPath), { recursive: true });
    await writeFile(run.socketPath, "precious");
    await expect(start({ socketPath: run.socketPath, listen: null })).rejects.toMatchObject({
      code: "api-failed",
      message: expect.stringContaining("is not a socket"),
    });
  });

  it("tightens a too-open socket folder to 0700", async () => {
    const run = await tempRunDir();
    cleanups.push(run.cleanup);
    await mkdir(dirname(run.socketPath), { recursive: true });
    await chmod(dirname(run.socketPath), 0o755);
    await start({ socketPath: run.socketPath, listen: null });
    expect((await stat(dirname(run.socketPath))).mode & 0o777).toBe(0o700);
  });
});

describe("bind failures", () => {
  it("a taken port is one api-failed error with a remedy, and the socket is not left behind", async () => {
    const first = await start();
    const run = await tempRunDir();
    cleanups.push(run.cleanup);
    const port = new URL(first.base).port;
    const err = await start({ listen: `127.0.0.1:${port}`, socketPath: run.socketPath }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KataError);
    expect(err).toMatchObject({
      code: "api-failed",
      message: `cannot listen on 127.0.0.1:${port}: address already in use`,
      remedy: expect.stringContaining("[api] listen"),
    });
    await expect(lstat(run.socketPath)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("refuses a non-loopback listen address", async () => {
    await expect(start({ listen: "0.0.0.0:8720" })).rejects.toMatchObject({ code: "api-failed" });
  });

  it("a socket folder that is a file is one api-failed error", async () => {
    const run = await tempRunDir();
    cleanups.push(run.cleanup);
    await mkdir(dirname(dirname(run.socketPath)), { recursive: true });
    await writeFile(dirname(run.socketPath), "");
    await expect(start({ socketPath: run.socketPath })).rejects.toMatchObject({ code: "api-failed" });
  });

  it("closes cleanly and removes its socket file", async () => {
    const s = await start();
    await s.api.close();
    await expect(lstat(s.socket.socketPath)).rejects.toMatchObject({ code: "ENOENT" });
    await expect(fetch(`${s.base}/healthz`)).rejects.toThrow();
  });
});
