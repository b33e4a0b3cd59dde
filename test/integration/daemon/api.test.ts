// The real daemon process (bin/kata-sysextd.js) on a free port with a sandbox root and a loopback release
// server, driven by real HTTP clients and the real kata-sysextctl: every route, schema conformance against the
// daemon's own /openapi.json, the read-only TCP listener, the root-only socket, and a clean SIGTERM.
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImage } from "../../helpers/images.ts";
import { freePort } from "../../helpers/net.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import {
  CTL,
  makeSandboxRoot,
  NODE,
  type RunningDaemon,
  runArgv,
  startDaemon,
  until,
  writeConfig,
} from "../../helpers/sandbox.ts";
import { OpenApiValidator } from "../api/fixtures.ts";

let server: ReleaseServer;
let daemon: RunningDaemon;
let root: string;
let base: string;
let imageBytes: number;
let pub: string;

beforeAll(async () => {
  pub = mkdtempSync(join(tmpdir(), "kata-pub-api-"));
  const published = await publishRelease(pub, {
    images: [{ version: "3.32.0", content: buildImage({ version: "3.32.0" }, join(pub, "b.raw")) }],
  });
  imageBytes = published.images[0]?.bytes ?? 0;
  server = await startReleaseServer(pub);
  root = makeSandboxRoot();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  writeConfig(
    root,
    `[source]\nurl = "${server.url}"\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`,
  );
  daemon = startDaemon(root);
  await until(
    "the first reconcile",
    async () => {
      const status = (await (await fetch(`${base}/status`)).json()) as {
        lastReconcile: unknown;
        extension: { active: unknown };
      };
      return status.lastReconcile !== null && status.extension.active !== null;
    },
    () => `daemon stderr:\n${daemon.stderr()}`,
  );
}, 60_000);

afterAll(async () => {
  if (daemon.child.exitCode === null) daemon.child.kill("SIGKILL");
  await server?.close();
});

describe("the daemon's API, for real", () => {
  it("serves every read-only route, each conforming to the schema in its own /openapi.json", async () => {
    const openapi = await (await fetch(`${base}/openapi.json`)).json();
    const validator = new OpenApiValidator(openapi);
    for (const path of ["/status", "/healthz", "/readyz", "/preflight"]) {
      const res = await fetch(`${base}${path}`);
      const body = await res.json();
      expect([200, 503]).toContain(res.status);
      expect(validator.check("GET", path, res.status, res.headers.get("content-type") ?? "", body)).toBeNull();
    }
    const status = (await (await fetch(`${base}/status`)).json()) as { extension: { limitation: string } };
    expect(status).toMatchObject({
      daemon: { version: expect.any(String), startedAt: expect.any(String) },
      host: { id: "flatcar", versionId: "4593.2.5", sysextLevel: "1.0", arch: "x86-64" },
      extension: { name: "kata-containers", active: "3.32.0", merged: false },
      nextBoot: null,
      lastReconcile: { result: "ok", error: null },
      state: expect.stringMatching(/^(idle|degraded)$/),
      members: [expect.objectContaining({ name: "kata-containers", active: "3.32.0" })],
    });
    // Under --root systemd-sysext 252 cannot merge the symlinked image: reported, and /readyz says not ready.
    expect(status.extension.limitation).toContain("--root");
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { reasons: string[] }).reasons.join(" ")).toContain("not merged");
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.headers.get("content-type")).toContain("text/plain");
    const text = await metrics.text();
    expect(text).toMatch(/kata_sysextd_kata_active_info\{name="kata-containers",version="3.32.0",trust="checksum"\} 1/);
    expect(text).toMatch(/kata_sysextd_reconcile_total\{result="ok"\} [1-9]/);
    // Every byte of the one download, the first chunk's included.
    expect(text).toContain(`\nkata_sysextd_download_bytes_total ${imageBytes}\n`);
  });

  it("is read-only on TCP and refuses foreign Host headers", async () => {
    for (const method of ["POST", "PUT", "PATCH", "DELETE"]) {
      const res = await fetch(`${base}/v1/refresh`, { method });
      expect(res.status).toBe(405);
    }
    const rebinding = await runArgv([
      "curl",
      "-s",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "-H",
      "Host: evil.example",
      `${base}/status`,
    ]);
    expect(rebinding.stdout).toBe("403");
  });

  it("keeps mutations on a root-only socket that kata-sysextctl uses", async () => {
    const socket = join(root, "run/kata-sysextd/api.sock");
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    const status = await runArgv([NODE, CTL, "status", "--root", root]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain("3.32.0");
    const refresh = await runArgv([NODE, CTL, "refresh", "--root", root, "--json"]);
    expect(refresh.code).toBe(0);
    const versions = await runArgv([NODE, CTL, "versions", "--root", root, "--json"]);
    expect(JSON.parse(versions.stdout)).toMatchObject({
      active: "3.32.0",
      local: [expect.objectContaining({ version: "3.32.0", active: true })],
      remote: [expect.objectContaining({ version: "3.32.0", compatible: true })],
    });
    // The publisher withdraws it: `versions` judges remote images with the publisher's metadata, as a pass does.
    writeFileSync(
      join(pub, "kata-containers/metadata.json"),
      JSON.stringify({ schemaVersion: 1, withdrawn: [{ kata: "3.32.0", reason: "shim crashes on boot" }] }),
    );
    const withdrawn = await runArgv([NODE, CTL, "versions", "--root", root, "--json"]);
    expect(JSON.parse(withdrawn.stdout).remote).toEqual([
      { version: "3.32.0", compatible: false, reason: expect.stringContaining("shim crashes on boot"), held: false },
    ]);
  });

  it("refuses a rollback with nothing to go back to, and keeps the record of the last pass", async () => {
    const stateFile = join(root, "var/lib/kata-sysextd/state.json");
    const before = JSON.parse(readFileSync(stateFile, "utf8")).lastReconcile;
    expect(before).toMatchObject({ result: "ok" });
    const rollback = await runArgv([NODE, CTL, "rollback", "--root", root]);
    expect(rollback.code).not.toBe(0);
    expect(rollback.stderr).toContain("no previous image to roll back to");
    expect(JSON.parse(readFileSync(stateFile, "utf8")).lastReconcile).toEqual(before);
    const status = (await (await fetch(`${base}/status`)).json()) as { lastReconcile: { result: string } };
    expect(status.lastReconcile.result).toBe("ok");
  });

  it("lists a release it stored for another release of the OS as not compatible, saying why", async () => {
    const other = buildImage(
      { version: "3.40.0", extensionRelease: "ID=flatcar\nVERSION_ID=9999.0.0\nARCHITECTURE=x86-64\n" },
      join(pub, "other.raw"),
    );
    await publishRelease(pub, {
      images: [
        { version: "3.32.0", content: join(pub, "b.raw") },
        { version: "3.40.0", content: other },
      ],
    });
    writeFileSync(join(pub, "kata-containers/metadata.json"), JSON.stringify({ schemaVersion: 1 }));
    expect((await runArgv([NODE, CTL, "refresh", "--root", root])).code).toBe(0);
    const versions = await runArgv([NODE, CTL, "versions", "--root", root, "--json"]);
    expect(JSON.parse(versions.stdout).remote).toEqual([
      { version: "3.32.0", compatible: true, reason: null, held: false },
      {
        version: "3.40.0",
        compatible: false,
        reason: expect.stringMatching(/^made for another release of the OS \(stored, not linked here\): VERSION_ID/),
        held: false,
      },
    ]);
  });

  it("stops cleanly on SIGTERM", async () => {
    expect(await daemon.stop()).toBe(0);
    expect(daemon.stderr()).toContain("SIGTERM: stopping");
  });
});
