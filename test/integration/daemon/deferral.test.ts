// policy.activation = "wait" with the real daemon: a new image waits while a Kata sandbox runs, and is activated
// soon after the last one ends, without waiting for the next timer pass (hours away). The sandbox is a real
// process named containerd-shim-kata-v2, in the daemon's own PID namespace, killed with SIGKILL.
import { copyFileSync, mkdtempSync, readlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildImage } from "../../helpers/images.ts";
import { freePort } from "../../helpers/net.ts";
import { runningAs } from "../../helpers/proc.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import { daemonOnce, makeSandboxRoot, startDaemon, until, writeConfig } from "../../helpers/sandbox.ts";

const LINK = "etc/extensions/kata-containers.raw";
let server: ReleaseServer;

beforeAll(async () => {
  const pub = mkdtempSync(join(tmpdir(), "kata-pub-wait-"));
  const images = ["3.30.0", "3.32.0"].map((version) => ({
    version,
    content: buildImage({ version }, join(pub, `${version}.raw`)),
  }));
  await publishRelease(pub, { images });
  server = await startReleaseServer(pub);
});
afterAll(async () => server?.close());

it("activates the waiting image within seconds of the last sandbox ending", async () => {
  const root = makeSandboxRoot();
  const port = await freePort();
  const base = `[source]\nurl = "${server.url}"\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`;
  writeConfig(root, `${base}[policy]\nversions = "<3.31"\n`);
  expect((await daemonOnce(root)).code).toBe(0);
  expect(readlinkSync(join(root, LINK))).toContain("3.30.0");

  writeConfig(root, `${base}[policy]\nactivation = "wait"\n`);
  const shim = join(mkdtempSync(join(tmpdir(), "kata-shim-")), "containerd-shim-kata-v2");
  copyFileSync("/bin/sleep", shim);
  const daemon = startDaemon(root, { sandboxShim: shim });
  try {
    await until(
      "the deferral",
      () => daemon.stderr().includes("activation deferred: 1 Kata sandbox running"),
      daemon.stderr,
    );
    expect(readlinkSync(join(root, LINK))).toContain("3.30.0");
    const [sandbox] = runningAs(shim);
    expect(sandbox).toBeGreaterThan(0);
    process.kill(sandbox ?? 0, "SIGKILL");
    const ended = Date.now();
    await until("3.32.0 active", () => readlinkSync(join(root, LINK)).includes("3.32.0"), daemon.stderr, 30_000);
    expect(Date.now() - ended).toBeLessThan(15_000); // the timer pass would come after interval_seconds (6 h)
    expect(daemon.stderr()).toContain("no Kata sandbox runs any more: activating what was waiting");
  } finally {
    // unshare, which runs the daemon's PID namespace, ignores SIGTERM; its --kill-child takes the daemon along.
    daemon.child.kill("SIGKILL");
    await daemon.exited;
  }
}, 60_000);
