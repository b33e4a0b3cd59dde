// The running daemon watches its configuration (chokidar): a bad new file is rejected and the old one kept, a
// good one is taken without a restart; a link changed behind its back is noticed and reconciled.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImage } from "../../helpers/images.ts";
import { freePort } from "../../helpers/net.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import { DAEMON, inMountNamespace, makeSandboxRoot, NODE, writeConfig } from "../../helpers/sandbox.ts";

let server: ReleaseServer;
let daemon: ChildProcess;
let root: string;
let base: string;
let config: string;
let stderr = "";

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}; daemon stderr:\n${stderr}`);
}

beforeAll(async () => {
  const pub = mkdtempSync(join(tmpdir(), "kata-pub-watch-"));
  const images = ["3.30.0", "3.32.0"].map((version) => ({
    version,
    content: buildImage({ version }, join(pub, `${version}.raw`)),
  }));
  await publishRelease(pub, { images });
  server = await startReleaseServer(pub);
  root = makeSandboxRoot();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  config = `[source]\nurl = "${server.url}"\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`;
  writeConfig(root, config);
  const [file, ...args] = inMountNamespace(root, [NODE, DAEMON, "--root", root]);
  if (file === undefined) throw new Error("no argv");
  daemon = spawn(file, args, {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, KATA_SYSEXTD_LOG: "stderr" },
  });
  daemon.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  await until("3.32.0 active", () => stderr.includes("activated kata-containers-3.32.0-x86-64.raw"));
}, 60_000);

afterAll(async () => {
  daemon.kill("SIGTERM");
  await new Promise((r) => daemon.once("exit", r));
  await server?.close();
});

describe("the daemon's file watches", () => {
  it("rejects a broken configuration and keeps serving with the old one", async () => {
    writeConfig(root, `${config}[policy]\nversions = "latest"\n`);
    await until("the rejection", () => stderr.includes("rejected the new configuration, keeping the old one"));
    expect(stderr).toContain('key "policy.versions" must be a semver range');
    expect((await fetch(`${base}/status`)).status).toBe(200);
  });

  it("takes a good configuration without a restart and acts on it", async () => {
    writeConfig(root, `${config}[policy]\nversions = "<3.31"\n`);
    await until("the reload", () => stderr.includes("configuration reloaded"));
    await until("3.30.0 active", () =>
      readlinkSync(join(root, "etc/extensions/kata-containers.raw")).includes("3.30.0"),
    );
    expect(daemon.exitCode).toBeNull();
  });

  it("notices a link removed behind its back and puts the right one back", async () => {
    const link = join(root, "etc/extensions/kata-containers.raw");
    rmSync(link);
    await until("the notice", () => stderr.includes("changed outside kata-sysextd; reconciling"));
    await until("the link back", () => {
      try {
        return readlinkSync(link).includes("3.30.0");
      } catch {
        return false;
      }
    });
    writeFileSync(join(root, "run/reboot-required"), "");
    await until("reboot-required", () => stderr.includes("/run/reboot-required appeared"));
  });
});
