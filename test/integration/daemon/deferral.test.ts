// policy.activation = "wait" with the real daemon: a new image waits while a Kata sandbox runs, and is activated
// soon after the last one ends, without waiting for the next timer pass (hours away). The sandbox is a real
// process named containerd-shim-kata-v2, in the daemon's own PID namespace, killed with SIGKILL.
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { StatusDocument } from "../../../src/status.ts";
import type { PersistedState } from "../../../src/store/state.ts";
import { buildImage } from "../../helpers/images.ts";
import { freePort } from "../../helpers/net.ts";
import { runningAs } from "../../helpers/proc.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import {
  CTL,
  daemonOnce,
  makeSandboxRoot,
  NODE,
  runArgv,
  startDaemon,
  until,
  writeConfig,
} from "../../helpers/sandbox.ts";

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
    // What waits, for how many sandboxes, since when, and when max_wait_seconds (a day) asks for a reboot.
    const status = async () => (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as StatusDocument;
    await until("/status", async () => (await status()).lastReconcile?.result === "deferred", daemon.stderr);
    const deferred = await status();
    const file = "kata-containers-3.32.0-x86-64.raw";
    expect(deferred.waiting).toMatchObject({
      members: [{ name: "kata-containers", version: "3.32.0", file }],
      sandboxes: 1,
    });
    const { since, rebootAt } = deferred.waiting ?? { since: "", rebootAt: null };
    expect(Date.parse(rebootAt ?? "") - Date.parse(since)).toBe(86_400_000);
    expect(deferred.lastReconcile).toMatchObject({
      error: 'Kata 3.32.0 waits: 1 Kata sandbox running; waiting until none run (policy.activation = "wait")',
      remedy: `it activates once the last Kata sandbox has ended; if sandboxes still run at ${rebootAt} (policy.max_wait_seconds), a reboot is asked for instead; drain the node's Kata pods to take it now`,
    });
    // state.json says the same, and keeps when the wait began.
    const state = JSON.parse(readFileSync(join(root, "var/lib/kata-sysextd/state.json"), "utf8")) as PersistedState;
    expect(state).toMatchObject({
      waitingSince: since,
      lastReconcile: { result: "deferred", error: deferred.lastReconcile?.error },
    });
    const ctl = await runArgv([NODE, CTL, "status", "--root", root]);
    expect(ctl.stdout).toContain(
      `  waiting    kata-containers 3.32.0, for 1 Kata sandbox to end, since ${since}; a reboot is asked for at ${rebootAt} if they still run\n`,
    );

    const [sandbox] = runningAs(shim);
    expect(sandbox).toBeGreaterThan(0);
    process.kill(sandbox ?? 0, "SIGKILL");
    const ended = Date.now();
    await until("3.32.0 active", () => readlinkSync(join(root, LINK)).includes("3.32.0"), daemon.stderr, 30_000);
    expect(Date.now() - ended).toBeLessThan(15_000); // the timer pass would come after interval_seconds (6 h)
    expect(daemon.stderr()).toContain("no Kata sandbox runs any more: activating what was waiting");
    await until("/status", async () => (await status()).lastReconcile?.result === "ok", daemon.stderr);
    expect((await status()).waiting).toBeNull();
  } finally {
    // unshare, which runs the daemon's PID namespace, ignores SIGTERM; its --kill-child takes the daemon along.
    daemon.child.kill("SIGKILL");
    await daemon.exited;
  }
}, 60_000);

it("asks for a reboot once policy.max_wait_seconds ran out, and withdraws it when the sandbox ends first", async () => {
  const root = makeSandboxRoot();
  const port = await freePort();
  const base = `[source]\nurl = "${server.url}"\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`;
  writeConfig(root, `${base}[policy]\nversions = "<3.31"\n`);
  expect((await daemonOnce(root)).code).toBe(0);

  writeConfig(root, `${base}[policy]\nactivation = "wait"\nmax_wait_seconds = 2\n`);
  const shimDir = mkdtempSync(join(tmpdir(), "kata-shim-"));
  const shim = join(shimDir, "containerd-shim-kata-v2");
  copyFileSync("/bin/sleep", shim);
  const sentinel = join(root, "run/reboot-required");
  const daemon = startDaemon(root, { sandboxShim: shim });
  const status = async () => (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as StatusDocument;
  try {
    // No pass is due for hours (interval_seconds): the daemon runs one when the wait runs out.
    await until("the reboot request", () => existsSync(sentinel), daemon.stderr, 30_000);
    const reason =
      "Kata 3.32.0 waited 2 s for running Kata sandboxes to end (policy.max_wait_seconds = 2) and activates at the next boot";
    expect(readFileSync(sentinel, "utf8")).toBe(`kata-sysextd: ${reason}\n`);
    await until("/status", async () => (await status()).reboot.requested, daemon.stderr);
    expect((await status()).reboot).toMatchObject({ requested: true, reason });
    // The wait ran out when /status said it would; what waits now waits for the reboot asked for.
    const { waiting, lastReconcile } = await status();
    expect(Date.parse(waiting?.rebootAt ?? "") - Date.parse(waiting?.since ?? "")).toBe(2_000);
    expect(lastReconcile).toMatchObject({
      result: "deferred",
      remedy: `the boot step activates it at the next boot, which is asked for: ${reason}`,
    });
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/^kata_sysextd_reboot_requested 1$/m);
    expect(readlinkSync(join(root, LINK))).toContain("3.30.0");

    // The sandbox ends before any reboot: the image is activated at once, and the request goes.
    const [sandbox] = runningAs(shim);
    expect(sandbox).toBeGreaterThan(0);
    process.kill(sandbox ?? 0, "SIGKILL");
    await until("3.32.0 active", () => readlinkSync(join(root, LINK)).includes("3.32.0"), daemon.stderr, 30_000);
    await until("the withdrawal", () => !existsSync(sentinel), daemon.stderr);
    await until("/status", async () => !(await status()).reboot.requested, daemon.stderr);
    expect(daemon.stderr()).toContain("reboot request withdrawn, what it was for is active or no longer wanted");
  } finally {
    daemon.child.kill("SIGKILL");
    await daemon.exited;
    for (const dir of [root, shimDir]) rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
