// Stopping the real daemon while a download hangs: SIGTERM aborts the transfer instead of waiting out the idle
// timeout and its retries (which would outlast the unit's TimeoutStopSec and end in SIGKILL), keeps the
// .partial for the next start, and exits 0.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImage } from "../../helpers/images.ts";
import { freePort } from "../../helpers/net.ts";
import { publishRelease, type ReleaseServer, releasePath, startReleaseServer } from "../../helpers/release-server.ts";
import { makeSandboxRoot, startDaemon, until, writeConfig } from "../../helpers/sandbox.ts";

let server: ReleaseServer;

beforeAll(async () => {
  const pub = mkdtempSync(join(tmpdir(), "kata-pub-stop-"));
  await publishRelease(pub, {
    images: [
      {
        version: "3.32.0",
        // Random bytes do not compress: the image stays larger than what the server sends before it stalls.
        content: buildImage(
          { version: "3.32.0", files: { "opt/kata/share/blob": { content: randomBytes(512 << 10), mode: 0o644 } } },
          join(pub, "b.raw"),
        ),
      },
    ],
  });
  server = await startReleaseServer(pub);
  // Headers and the first 64 KiB, then silence: the download hangs until the idle timeout.
  server.setFault(releasePath("kata-containers-3.32.0-x86-64.raw"), { kind: "stall", afterBytes: 65_536 });
});
afterAll(async () => server?.close());

it("SIGTERM during a hung download stops within seconds and keeps the partial", async () => {
  const root = makeSandboxRoot();
  const port = await freePort();
  writeConfig(
    root,
    `[source]\nurl = "${server.url}"\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n` +
      "[fetch]\nidle_timeout_seconds = 120\nretries = 4\n",
  );
  const daemon = startDaemon(root);
  try {
    const status = async () => (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as { download: unknown };
    await until("the download to start", async () => (await status()).download !== null, daemon.stderr);
    await new Promise((r) => setTimeout(r, 500)); // into the stall
    const started = Date.now();
    const code = await daemon.stop();
    const ms = Date.now() - started;
    expect(code).toBe(0);
    expect(ms).toBeLessThan(10_000); // the idle timeout alone is 120 s
    expect(daemon.stderr()).toContain("SIGTERM: stopping");
    const incoming = join(root, "var/lib/kata-sysextd/images/.incoming");
    expect(readdirSync(incoming)).toEqual([".kata-containers-3.32.0-x86-64.raw.partial"]);
  } finally {
    daemon.child.kill("SIGKILL");
  }
}, 60_000);

describe("signals from the very start", () => {
  /** A daemon on a fresh root, signalled the moment its API first answers (READY=1 is out by then). */
  async function signalledAtFirstAnswer(signal: NodeJS.Signals) {
    const root = makeSandboxRoot();
    const port = await freePort();
    writeConfig(
      root,
      // A source that refuses at once: the first pass ends quickly, so a reload does not wait behind a download.
      `[source]\nurl = "http://127.0.0.1:9/"\n[fetch]\nretries = 0\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`,
    );
    const daemon = startDaemon(root);
    const answers = () =>
      fetch(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
    // Polled tightly: the window between READY and the handlers being installed was about a tenth of a second.
    const deadline = Date.now() + 20_000;
    while (!(await answers()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    daemon.signal(signal);
    return daemon;
  }

  it("a reload (SIGHUP) right after start-up is done once the daemon can, and never ends it", async () => {
    const daemon = await signalledAtFirstAnswer("SIGHUP");
    try {
      await until(
        "the queued reload",
        () => daemon.stderr().includes("configuration reloaded (unchanged)"),
        daemon.stderr,
      );
      expect(daemon.child.exitCode).toBeNull();
      expect(daemon.child.signalCode).toBeNull();
      expect(await daemon.stop()).toBe(0);
    } finally {
      daemon.child.kill("SIGKILL");
    }
  }, 60_000);

  it("a stop (SIGTERM) right after start-up exits 0", async () => {
    const daemon = await signalledAtFirstAnswer("SIGTERM");
    try {
      expect(await daemon.exited).toBe(0);
      expect(daemon.child.signalCode).toBeNull();
      expect(daemon.stderr()).toContain("SIGTERM: stopping");
    } finally {
      daemon.child.kill("SIGKILL");
    }
  }, 60_000);
});
