// The reboot sentinel's life cycle on --root trees: real squashfs images from a release server on 127.0.0.1, the
// real systemd-sysext under --root, the real `kata-sysextd --once` and `kata-sysextd boot`, and a real process whose
// argv[0] is containerd-shim-kata-v2 standing in for a running Kata sandbox. That process runs in a PID namespace
// of its own with the pass that should see it (so tests running at the same time never do) and is killed with
// SIGKILL when the namespace's first process ends.
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MessageId } from "../../../src/log/logger.ts";
import type { PersistedState, RebootRequest } from "../../../src/store/state.ts";
import { buildImage } from "../../helpers/images.ts";
import { publishRelease, type ReleaseServer, sha256Hex, startReleaseServer } from "../../helpers/release-server.ts";
import {
  DAEMON,
  daemonOnce,
  inMountNamespace,
  makeSandboxRoot,
  NODE,
  type Ran,
  runArgv,
  writeConfig,
} from "../../helpers/sandbox.ts";

const LINK = "etc/extensions/kata-containers.raw";
const SENTINEL = "run/reboot-required";
const MARKER = "var/lib/kata-sysextd/reboot-sentinel.owner";
const PASS_AT = join(import.meta.dirname, "reboot-pass.ts");
const APT = "*** System restart required ***\n";
const STAGED = 'kata-sysextd: Kata 3.32.0 is staged and activates at the next boot (policy.activation = "next-boot")\n';

let pub: string;
let server: ReleaseServer;
let shimDir: string;
const roots: string[] = [];

beforeAll(async () => {
  pub = mkdtempSync(join(tmpdir(), "kata-pub-reboot-"));
  const images = ["3.30.0", "3.32.0"].map((version) => ({
    version,
    content: buildImage({ version }, join(pub, "build", `${version}.raw`)),
  }));
  await publishRelease(pub, { images });
  server = await startReleaseServer(pub);
  shimDir = mkdtempSync(join(tmpdir(), "kata-shim-"));
  copyFileSync("/bin/sleep", join(shimDir, "containerd-shim-kata-v2"));
});
afterAll(async () => {
  await server?.close();
  for (const dir of [pub, shimDir]) if (dir) rmSync(dir, { recursive: true, force: true });
});
afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

const sandboxRunning = () => ({ sandboxShim: join(shimDir, "containerd-shim-kata-v2") });

/** A root with 3.30.0 active, then configured with `policy` and `cluster` (TOML lines); 3.32.0 is published. */
async function rootWith30Active(policy: string, cluster = "", url = server.url): Promise<string> {
  const root = makeSandboxRoot();
  roots.push(root);
  writeConfig(root, `[source]\nurl = "${url}"\n[containerd]\nenabled = false\n[policy]\nversions = "<3.31"\n`);
  const first = await daemonOnce(root);
  expect(first.code, first.stderr).toBe(0);
  expect(readlinkSync(join(root, LINK))).toContain("3.30.0");
  writeConfig(root, `[source]\nurl = "${url}"\n[containerd]\nenabled = false\n[policy]\n${policy}\n${cluster}`);
  return root;
}

const state = (root: string): PersistedState =>
  JSON.parse(readFileSync(join(root, "var/lib/kata-sysextd/state.json"), "utf8"));
const sentinel = (root: string): string | null =>
  existsSync(join(root, SENTINEL)) ? readFileSync(join(root, SENTINEL), "utf8") : null;
const boot = (root: string): Promise<Ran> => runArgv(inMountNamespace(root, [NODE, DAEMON, "boot", "--root", root]));

/** One pass with the Reconciler's clock at `at`, beside a running sandbox. */
async function passAt(root: string, at: string) {
  const ran = await runArgv(inMountNamespace(root, [NODE, PASS_AT, root, at], sandboxRunning()));
  expect(ran.code, ran.stderr).toBe(0);
  const outcome = JSON.parse(ran.stdout) as {
    result: string;
    reboot: RebootRequest | null;
    requeueAfterMs: number | null;
  };
  return { ...outcome, stderr: ran.stderr };
}

describe("the reboot sentinel's life cycle", () => {
  it("wait: no request until policy.max_wait_seconds has passed (injected Clock), then the sentinel; the boot step activates and removes it", async () => {
    const root = await rootWith30Active('activation = "wait"\nmax_wait_seconds = 3600');

    const first = await passAt(root, "2026-12-02T08:00:00.000Z");
    expect(first.result).toBe("deferred");
    expect(first.stderr).toContain("activation deferred: 1 Kata sandbox running; waiting until none run");
    expect(first).toMatchObject({ reboot: null, requeueAfterMs: 3_600_000 });
    expect(sentinel(root)).toBeNull();
    expect(state(root)).toMatchObject({ waitingSince: "2026-12-02T08:00:00.000Z", deferred: {}, reboot: null });

    const later = await passAt(root, "2026-12-02T08:59:00.000Z");
    expect(later).toMatchObject({ result: "deferred", reboot: null, requeueAfterMs: 60_000 });
    expect(sentinel(root)).toBeNull();

    const expired = await passAt(root, "2026-12-02T09:00:00.000Z");
    const reason =
      "Kata 3.32.0 waited 1 h for running Kata sandboxes to end (policy.max_wait_seconds = 3600) and activates at the next boot";
    expect(expired).toMatchObject({
      result: "deferred",
      requeueAfterMs: null,
      reboot: {
        reason,
        since: "2026-12-02T09:00:00.000Z",
        sentinel: { path: "/run/reboot-required", owner: "kata-sysextd" },
      },
    });
    expect(sentinel(root)).toBe(`kata-sysextd: ${reason}\n`);
    expect(JSON.parse(readFileSync(join(root, MARKER), "utf8"))).toEqual({
      sentinel: "/run/reboot-required",
      wrote: [`kata-sysextd: ${reason}\n`],
    });
    expect(expired.stderr).toContain(`MESSAGE_ID=${MessageId.rebootRequested}`);
    expect(expired.stderr).toContain(`reboot requested: ${reason}; wrote /run/reboot-required`);
    // Recorded for the boot step, which activates it before containerd starts (so before any sandbox).
    expect(state(root).deferred).toEqual({ "kata-containers": "kata-containers-3.32.0-x86-64.raw" });

    // A pass later the same request stands: same line, same since, no second journal record.
    const again = await passAt(root, "2026-12-02T10:00:00.000Z");
    expect(again.reboot?.since).toBe("2026-12-02T09:00:00.000Z");
    expect(again.stderr).not.toContain("reboot requested");
    expect(sentinel(root)).toBe(`kata-sysextd: ${reason}\n`);

    // The reboot (the coordinator drained the node): no sandbox runs before containerd starts.
    const booted = await boot(root);
    expect(booted.code, booted.stderr).toBe(0);
    expect(readlinkSync(join(root, LINK))).toContain("3.32.0");
    expect(sentinel(root)).toBeNull();
    expect(existsSync(join(root, MARKER))).toBe(false);
    expect(state(root)).toMatchObject({ reboot: null, deferred: {} });
    expect(booted.stderr).toContain("reboot request withdrawn");
    expect(booted.stderr).toContain("removed /run/reboot-required");

    // The wait ended with the reboot: the next deferral (here back to 3.30.0, under a sandbox started since)
    // waits max_wait_seconds of its own instead of asking for another reboot at once.
    expect(state(root).waitingSince).toBeNull();
    writeConfig(
      root,
      `[source]\nurl = "${server.url}"\n[containerd]\nenabled = false\n[policy]\nversions = "<3.31"\nactivation = "wait"\nmax_wait_seconds = 3600\n`,
    );
    const next = await passAt(root, "2026-12-02T11:00:00.000Z");
    expect(next).toMatchObject({ result: "deferred", reboot: null, requeueAfterMs: 3_600_000 });
    expect(sentinel(root)).toBeNull();
    expect(state(root).waitingSince).toBe("2026-12-02T11:00:00.000Z");
  }, 60_000);

  it("next-boot: the sentinel at once, with the journal record; the boot step removes it after activating", async () => {
    const root = await rootWith30Active('activation = "next-boot"');
    const deferred = await daemonOnce(root, [], sandboxRunning());
    expect(deferred.code).toBe(1);
    expect(sentinel(root)).toBe(STAGED);
    expect(deferred.stderr).toContain(`MESSAGE_ID=${MessageId.rebootRequested}`);
    expect(deferred.stderr).toContain("REBOOT_SENTINEL=/run/reboot-required REBOOT_SENTINEL_OWNER=kata-sysextd");
    expect(state(root).reboot).toMatchObject({ sentinel: { path: "/run/reboot-required", owner: "kata-sysextd" } });
    expect(readlinkSync(join(root, LINK))).toContain("3.30.0");

    const booted = await boot(root);
    expect(booted.code, booted.stderr).toBe(0);
    expect(readlinkSync(join(root, LINK))).toContain("3.32.0");
    expect(sentinel(root)).toBeNull();
    expect(existsSync(join(root, MARKER))).toBe(false);
    expect(state(root).reboot).toBeNull();
  });

  it("a sentinel another package wrote is left alone: it carries our request, and the boot step keeps it", async () => {
    const root = await rootWith30Active('activation = "next-boot"');
    writeFileSync(join(root, SENTINEL), APT);
    const deferred = await daemonOnce(root, [], sandboxRunning());
    expect(deferred.code).toBe(1);
    expect(sentinel(root)).toBe(APT);
    expect(existsSync(join(root, MARKER))).toBe(false);
    expect(state(root).reboot).toMatchObject({
      reason: 'Kata 3.32.0 is staged and activates at the next boot (policy.activation = "next-boot")',
      sentinel: { path: "/run/reboot-required", owner: "other" },
    });
    expect(deferred.stderr).toContain(
      "/run/reboot-required was already there (another package asked for a reboot too)",
    );

    const booted = await boot(root);
    expect(booted.code, booted.stderr).toBe(0);
    expect(readlinkSync(join(root, LINK))).toContain("3.32.0");
    expect(sentinel(root)).toBe(APT);
    expect(state(root).reboot).toBeNull();
  });

  it("the boot step removes only its own: ours, since overwritten by another package, stays", async () => {
    const root = await rootWith30Active('activation = "next-boot"');
    expect((await daemonOnce(root, [], sandboxRunning())).code).toBe(1);
    expect(sentinel(root)).toBe(STAGED);
    writeFileSync(join(root, SENTINEL), APT);

    const booted = await boot(root);
    expect(booted.code, booted.stderr).toBe(0);
    expect(readlinkSync(join(root, LINK))).toContain("3.32.0");
    expect(sentinel(root)).toBe(APT);
    expect(existsSync(join(root, MARKER))).toBe(false);
  });

  it("a boot step that fails still withdraws the request: the reboot it asked for has happened", async () => {
    const root = await rootWith30Active(
      'activation = "next-boot"',
      '[cluster]\nreboot_sentinel = "/var/lib/reboot-needed"',
    );
    expect((await daemonOnce(root, [], sandboxRunning())).code).toBe(1);
    expect(readFileSync(join(root, "var/lib/reboot-needed"), "utf8")).toBe(STAGED);
    // A root without an os-release: the boot step cannot tell which release it booted, and fails.
    rmSync(join(root, "usr/lib/os-release"));
    rmSync(join(root, "etc/os-release"), { force: true });
    const booted = await boot(root);
    expect(booted.code).toBe(1);
    // On a path that survives reboots, a sentinel left behind would have the node rebooted again and again.
    expect(existsSync(join(root, "var/lib/reboot-needed"))).toBe(false);
    expect(state(root).reboot).toBeNull();
    expect(booted.stderr).toContain("reboot request withdrawn, the reboot it asked for has happened");
  });

  it('reboot_sentinel = "" writes no file, yet the request stands in the state /status shows', async () => {
    const root = await rootWith30Active('activation = "next-boot"', '[cluster]\nreboot_sentinel = ""');
    const deferred = await daemonOnce(root, [], sandboxRunning());
    expect(deferred.code).toBe(1);
    expect(sentinel(root)).toBeNull();
    expect(state(root).reboot).toMatchObject({ sentinel: null });
    expect(deferred.stderr).toContain("no sentinel is configured ([cluster] reboot_sentinel)");
    // The boot step still takes what was deferred.
    expect((await boot(root)).code).toBe(0);
    expect(readlinkSync(join(root, LINK))).toContain("3.32.0");
  });
});

describe("withdrawal before the reboot", () => {
  let dir: string;
  let withdrawing: ReleaseServer;

  /** Publishes 3.30.0 and 3.32.0, with a metadata.json (listed in SHA256SUMS) that withdraws 3.32.0 when asked. */
  async function publish(withdraw: boolean): Promise<void> {
    const images = ["3.30.0", "3.32.0"].map((version) => ({ version, content: join(pub, "build", `${version}.raw`) }));
    const metadata = JSON.stringify({
      schemaVersion: 1,
      withdrawn: withdraw ? [{ kata: "3.32.0", reason: "shim crashes" }] : [],
    });
    await publishRelease(dir, { images, extraLines: [`${sha256Hex(Buffer.from(metadata))}  metadata.json`] });
    writeFileSync(join(dir, "kata-containers/metadata.json"), metadata);
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "kata-pub-withdraw-"));
    withdrawing = await startReleaseServer(dir);
  });
  afterAll(async () => {
    await withdrawing?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the publisher withdraws the staged image: the request and our sentinel go with it", async () => {
    await publish(false);
    const root = await rootWith30Active('activation = "next-boot"', "", withdrawing.url);
    expect((await daemonOnce(root, [], sandboxRunning())).code).toBe(1);
    expect(sentinel(root)).toBe(STAGED);

    await publish(true);
    const withdrawn = await daemonOnce(root, [], sandboxRunning());
    expect(withdrawn.code, withdrawn.stderr).toBe(0); // 3.30.0 is what the policy wants now, and it is active
    expect(sentinel(root)).toBeNull();
    expect(existsSync(join(root, MARKER))).toBe(false);
    expect(state(root)).toMatchObject({ reboot: null, deferred: {} });
    expect(withdrawn.stderr).toContain("reboot request withdrawn, what it was for is active or no longer wanted");

    // Nothing is left for the boot step to activate.
    expect((await boot(root)).code).toBe(0);
    expect(readlinkSync(join(root, LINK))).toContain("3.30.0");
  });

  it("the operator's policy stops taking it: withdrawn the same way", async () => {
    await publish(false);
    const root = await rootWith30Active('activation = "next-boot"', "", withdrawing.url);
    expect((await daemonOnce(root, [], sandboxRunning())).code).toBe(1);
    expect(sentinel(root)).toBe(STAGED);
    writeConfig(
      root,
      `[source]\nurl = "${withdrawing.url}"\n[containerd]\nenabled = false\n[policy]\nactivation = "next-boot"\nversions = "<3.31"\n`,
    );
    expect((await daemonOnce(root, [], sandboxRunning())).code).toBe(0);
    expect(sentinel(root)).toBeNull();
    expect(state(root).reboot).toBeNull();
  });
});
