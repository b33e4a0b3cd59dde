// The system bus exists but does not answer when the daemon starts (dbus-daemon restarting): the daemon must
// still follow update_engine once the bus is back, and stage the next release's image before the reboot.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startTestBus, type TestBus } from "../../helpers/dbus.ts";
import { type FakeUpdateEngine, startFakeUpdateEngine } from "../../helpers/fake-update-engine.ts";
import { buildImage } from "../../helpers/images.ts";
import { freePort } from "../../helpers/net.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import { makeSandboxRoot, type RunningDaemon, startDaemon, until, writeConfig } from "../../helpers/sandbox.ts";

let server: ReleaseServer;
let bus: TestBus;
let engine: FakeUpdateEngine | null = null;
let daemon: RunningDaemon | null = null;

beforeAll(async () => {
  const pub = mkdtempSync(join(tmpdir(), "kata-pub-late-bus-"));
  await publishRelease(pub, {
    images: [{ version: "3.32.0", content: buildImage({ version: "3.32.0" }, join(pub, "a.raw")) }],
  });
  server = await startReleaseServer(pub);
  bus = await startTestBus();
  process.env.DBUS_SYSTEM_BUS_ADDRESS = bus.address; // the daemon inherits it (this file has a worker of its own)
});
afterAll(async () => {
  await daemon?.stop();
  await engine?.stop();
  await bus?.stop();
  await server?.close();
});

it("follows update_engine once a bus that did not answer at start comes back", async () => {
  await bus.kill(); // the socket's address is set, nobody answers on it
  const root = makeSandboxRoot();
  const port = await freePort();
  writeConfig(
    root,
    `[source]\nurl = "${server.url}"\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`,
  );
  daemon = startDaemon(root);
  const d = daemon;
  await until("the daemon to give up waiting for the bus", () => d.stderr().includes("does not answer yet"), d.stderr);
  await bus.restart();
  engine = await startFakeUpdateEngine({
    address: bus.address,
    initial: { operation: "UPDATE_STATUS_UPDATED_NEED_REBOOT", newVersion: "4650.0.0" },
  });
  const nextBoot = () => {
    try {
      return JSON.parse(readFileSync(join(root, "var/lib/kata-sysextd/state.json"), "utf8")).nextBoot;
    } catch {
      return null; // no pass has written state.json yet
    }
  };
  await until("the image staged for 4650.0.0", () => nextBoot()?.staged === true, d.stderr, 40_000);
  expect(nextBoot()).toMatchObject({
    flatcarVersion: "4650.0.0",
    files: { "kata-containers": "kata-containers-3.32.0-x86-64.raw" },
  });
}, 90_000);
