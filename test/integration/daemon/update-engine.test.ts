// The real daemon following a fake update_engine (com.coreos.update1 on a private dbus-daemon) through the
// sequences a real one produces around an update: a restart that forgets the version, and an update that goes
// away while its Kata image is still being fetched.
import { randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { startTestBus, type TestBus } from "../../helpers/dbus.ts";
import { type FakeUpdateEngine, startFakeUpdateEngine } from "../../helpers/fake-update-engine.ts";
import { buildImage, flatcarRelease } from "../../helpers/images.ts";
import { freePort } from "../../helpers/net.ts";
import { publishRelease, type ReleaseServer, releasePath, startReleaseServer } from "../../helpers/release-server.ts";
import {
  daemonOnce,
  makeSandboxRoot,
  type RunningDaemon,
  startDaemon,
  until,
  writeConfig,
} from "../../helpers/sandbox.ts";

const NEXT = "kata-containers-3.31.0-x86-64.raw";
let server: ReleaseServer;
let bus: TestBus;
let engine: FakeUpdateEngine | null = null;
let daemon: RunningDaemon | null = null;

beforeAll(async () => {
  const pub = mkdtempSync(join(tmpdir(), "kata-pub-ue-"));
  await publishRelease(pub, {
    images: [
      {
        version: "3.30.0",
        content: buildImage({ version: "3.30.0", extensionRelease: flatcarRelease("4593.2.5") }, join(pub, "c.raw")),
      },
      {
        version: "3.32.0",
        content: buildImage({ version: "3.32.0", extensionRelease: flatcarRelease("4593.2.5") }, join(pub, "a.raw")),
      },
      {
        version: "3.31.0",
        content: buildImage(
          {
            version: "3.31.0",
            extensionRelease: flatcarRelease("4650.0.0"),
            // Large enough that a stall after 64 KiB holds the staging download.
            files: { "opt/kata/share/blob": { content: randomBytes(512 << 10), mode: 0o644 } },
          },
          join(pub, "b.raw"),
        ),
      },
    ],
  });
  server = await startReleaseServer(pub);
  bus = await startTestBus();
  process.env.DBUS_SYSTEM_BUS_ADDRESS = bus.address; // the daemon inherits it (this file has a worker of its own)
});
afterEach(async () => {
  server.clearFaults();
  if (daemon !== null) {
    await daemon.stop();
    daemon = null;
  }
  await engine?.stop();
  engine = null;
});
afterAll(async () => {
  await bus?.stop();
  await server?.close();
});

async function start(): Promise<{ root: string; status: () => Promise<{ nextBoot: unknown; download: unknown }> }> {
  engine = await startFakeUpdateEngine({ address: bus.address, initial: { operation: "UPDATE_STATUS_IDLE" } });
  const root = makeSandboxRoot("4593.2.5");
  const port = await freePort();
  writeConfig(
    root,
    `[source]\nurl = "${server.url}"\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n` +
      // A stalled download breaks after 3 s and is retried; the second test clears the stall meanwhile.
      "[fetch]\nidle_timeout_seconds = 3\n",
  );
  daemon = startDaemon(root);
  const status = async () => (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as never;
  const d = daemon;
  await until(
    "the first pass",
    async () => ((await status()) as { lastReconcile: unknown }).lastReconcile !== null,
    d.stderr,
  );
  return { root, status };
}

const stateNextBoot = (root: string) =>
  JSON.parse(readFileSync(join(root, "var/lib/kata-sysextd/state.json"), "utf8")).nextBoot;

it("keeps what was staged when a restarted update_engine reports the update with version 0.0.0", async () => {
  const { root, status } = await start();
  engine?.emit({ operation: "UPDATE_STATUS_UPDATED_NEED_REBOOT", newVersion: "4650.0.0", progress: 1 });
  await until("staging for 4650.0.0", async () => stateNextBoot(root)?.staged === true, daemon?.stderr);
  // update-engine.service restarts before the reboot: it still knows an update waits, not which one.
  await engine?.stop();
  engine = await startFakeUpdateEngine({
    address: bus.address,
    initial: { operation: "UPDATE_STATUS_UPDATED_NEED_REBOOT", newVersion: "0.0.0" },
  });
  await until(
    "the daemon to see it",
    () => daemon?.stderr().includes("without its version (0.0.0)") === true,
    daemon?.stderr,
  );
  expect(stateNextBoot(root)).toMatchObject({
    flatcarVersion: "4650.0.0",
    files: { "kata-containers": NEXT },
    staged: true,
  });
  expect(await status()).toMatchObject({ nextBoot: { flatcarVersion: "4650.0.0", staged: true } });
}, 90_000);

it("forgets the next boot when the update goes away while its image is still being fetched", async () => {
  const { root, status } = await start();
  server.setFault(releasePath(NEXT), { kind: "stall", afterBytes: 65_536 });
  engine?.emit({ operation: "UPDATE_STATUS_UPDATED_NEED_REBOOT", newVersion: "4650.0.0", progress: 1 });
  await until("the staging download", async () => (await status()).download !== null, daemon?.stderr);
  engine?.emit({ operation: "UPDATE_STATUS_IDLE", newVersion: "", progress: 0 });
  server.clearFaults(); // the stalled attempt times out, the retry completes, and the staging records its result
  await until(
    "staging to end",
    () => /staged Kata|nothing staged/.test(daemon?.stderr() ?? ""),
    daemon?.stderr,
    60_000,
  );
  await until("the next boot to be forgotten", async () => (await status()).nextBoot === null, daemon?.stderr);
  expect(stateNextBoot(root)).toBeNull();
}, 120_000);

it("asks for one reboot that serves both when update_engine already waits for its own", async () => {
  engine = await startFakeUpdateEngine({ address: bus.address, initial: { operation: "UPDATE_STATUS_IDLE" } });
  const root = makeSandboxRoot("4593.2.5");
  const port = await freePort();
  const base = `[source]\nurl = "${server.url}"\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`;
  writeConfig(root, `${base}[policy]\nversions = "<3.31"\n`);
  expect((await daemonOnce(root)).code).toBe(0);
  // 3.32.0 is wanted now, a Kata sandbox runs, and the policy defers it to the next boot.
  writeConfig(root, `${base}[policy]\nactivation = "next-boot"\n`);
  const shimDir = mkdtempSync(join(tmpdir(), "kata-shim-"));
  copyFileSync("/bin/sleep", join(shimDir, "containerd-shim-kata-v2"));
  daemon = startDaemon(root, { sandboxShim: join(shimDir, "containerd-shim-kata-v2") });
  const d = daemon;
  const sentinel = () =>
    existsSync(join(root, "run/reboot-required")) ? readFileSync(join(root, "run/reboot-required"), "utf8") : "";
  try {
    await until("the reboot request", () => sentinel().includes("Kata 3.32.0 is staged"), d.stderr);
    // update_engine installs Flatcar 4650.0.0: its Kata (3.31.0) is staged, and the reboot asked for serves both.
    engine.emit({ operation: "UPDATE_STATUS_UPDATED_NEED_REBOOT", newVersion: "4650.0.0", progress: 1 });
    await until("the sentinel to say so", () => sentinel().includes("one reboot serves both"), d.stderr, 30_000);
    expect(sentinel()).toBe(
      'kata-sysextd: Kata 3.31.0 is staged for Flatcar 4650.0.0, which update_engine installed and waits to reboot into: one reboot serves both (Kata 3.32.0 is staged and activates at the next boot (policy.activation = "next-boot"))\n',
    );
    expect(stateNextBoot(root)).toMatchObject({
      flatcarVersion: "4650.0.0",
      files: { "kata-containers": NEXT },
      staged: true,
    });
  } finally {
    d.child.kill("SIGKILL"); // unshare's --kill-child takes the daemon and the stand-in sandbox along
    await d.exited;
    daemon = null;
    for (const dir of [root, shimDir]) rmSync(dir, { recursive: true, force: true });
  }
}, 90_000);
