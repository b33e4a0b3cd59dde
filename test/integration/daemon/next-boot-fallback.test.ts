// A bad newest release for the NEXT OS release must not leave that release without Kata: the real daemon follows a
// fake update_engine (com.coreos.update1 on a private dbus-daemon) to UPDATED_NEED_REBOOT, and stages from a real
// release server on 127.0.0.1 with real squashfs images, skipping the tampered newest one as a pass would.
import { existsSync, mkdtempSync, readFileSync, readlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startTestBus, type TestBus } from "../../helpers/dbus.ts";
import { type FakeUpdateEngine, startFakeUpdateEngine } from "../../helpers/fake-update-engine.ts";
import { buildImage, flatcarRelease } from "../../helpers/images.ts";
import { freePort } from "../../helpers/net.ts";
import { publishRelease, type ReleaseServer, releasePath, startReleaseServer } from "../../helpers/release-server.ts";
import { makeSandboxRoot, type RunningDaemon, startDaemon, until, writeConfig } from "../../helpers/sandbox.ts";

const file = (version: string) => `kata-containers-${version}-x86-64.raw`;
let pub = "";
let server: ReleaseServer;
let bus: TestBus;
let engine: FakeUpdateEngine | null = null;
let daemon: RunningDaemon | null = null;

const image = (version: string, flatcar: string) => ({
  version,
  content: buildImage({ version, extensionRelease: flatcarRelease(flatcar) }, join(pub, "build", `${version}.raw`)),
});

beforeAll(async () => {
  pub = mkdtempSync(join(tmpdir(), "kata-pub-next-fallback-"));
  await publishRelease(pub, { images: [image("3.30.0", "4593.2.5")] });
  server = await startReleaseServer(pub);
  bus = await startTestBus();
  process.env.DBUS_SYSTEM_BUS_ADDRESS = bus.address; // the daemon inherits it (this file has a worker of its own)
}, 60_000);
afterAll(async () => {
  await daemon?.stop();
  await engine?.stop();
  await bus?.stop();
  await server?.close();
});

it("stages the newest good release for the next OS, past a tampered one and one for yet another release", async () => {
  engine = await startFakeUpdateEngine({ address: bus.address, initial: { operation: "UPDATE_STATUS_IDLE" } });
  const root = makeSandboxRoot("4593.2.5");
  const port = await freePort();
  writeConfig(
    root,
    `[source]\nurl = "${server.url}"\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`,
  );
  daemon = startDaemon(root);
  const d = daemon;
  const status = async () => (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as Record<string, never>;
  await until("the first pass", async () => (await status()).lastReconcile !== null, d.stderr);
  expect(readlinkSync(join(root, "etc/extensions/kata-containers.raw"))).toContain(file("3.30.0"));

  // Flatcar 4650.0.0 comes out with two Kata releases for it, the newer one's bytes not what SHA256SUMS says; and
  // a newer Kata still, for a Flatcar beyond it.
  await publishRelease(pub, {
    images: [
      image("3.30.0", "4593.2.5"),
      image("3.32.0", "4650.0.0"),
      image("3.33.0", "4650.0.0"),
      image("3.34.0", "4700.0.0"),
    ],
  });
  server.setFault(releasePath(file("3.33.0")), { kind: "corrupt" });
  engine.emit({ operation: "UPDATE_STATUS_UPDATED_NEED_REBOOT", newVersion: "4650.0.0", progress: 1 });
  const stateFile = join(root, "var/lib/kata-sysextd/state.json");
  const nextBoot = () => JSON.parse(readFileSync(stateFile, "utf8")).nextBoot;
  await until("staging to be recorded", () => nextBoot() !== null, d.stderr, 60_000);

  const state = JSON.parse(readFileSync(stateFile, "utf8"));
  expect(state.nextBoot, d.stderr()).toMatchObject({
    flatcarVersion: "4650.0.0",
    files: { "kata-containers": file("3.32.0") },
    staged: true,
  });
  expect(state.nextBoot.skipped["kata-containers"]).toEqual([
    expect.objectContaining({ file: file("3.33.0"), reason: expect.stringMatching(/SHA-256 is .*SHA256SUMS says/) }),
  ]);
  // Remembered as a pass remembers it, by the digest SHA256SUMS published: not fetched again before its retry.
  expect(state.failedCandidates["kata-containers"]).toEqual([
    expect.objectContaining({ file: file("3.33.0"), code: "digest-mismatch", attempts: 1 }),
  ]);
  expect(d.stderr()).toMatch(
    /skipping kata-containers-3\.33\.0-x86-64\.raw: .*SHA-256 is .*, and staging for flatcar 4650\.0\.0 falls back/,
  );
  expect(d.stderr()).toMatch(
    /staged Kata 3\.32\.0 for Flatcar 4650\.0\.0; newer releases were skipped: kata-containers 3\.33\.0 \(.*SHA-256/,
  );
  await until("/status to show it", async () => (await status()).nextBoot !== null, d.stderr);
  expect((await status()).nextBoot).toMatchObject({
    flatcarVersion: "4650.0.0",
    kata: "3.32.0",
    staged: true,
    reason: null,
    skipped: [{ member: "kata-containers", version: "3.33.0", file: file("3.33.0") }],
  });
  // 3.34.0 is kept for the release it is made for, and is no failure of its own.
  expect(d.stderr()).toMatch(
    /verified and stored kata-containers-3\.34\.0-x86-64\.raw, made for another flatcar release/,
  );
  expect(existsSync(join(root, "var/lib/kata-sysextd/images", file("3.34.0")))).toBe(true);
  // Staging links nothing: the running release keeps its image.
  expect(readlinkSync(join(root, "etc/extensions/kata-containers.raw"))).toContain(file("3.30.0"));
  expect(server.requests.filter((r) => r.path === releasePath(file("3.33.0")))).toHaveLength(1);
}, 120_000);
