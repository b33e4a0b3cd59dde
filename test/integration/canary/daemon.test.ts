// The canary in the running daemon (--root, real containerd 1.6 with runc, outside nspawn): it proves the image the
// first pass activated, shows the result in /status and /metrics, runs on demand through `kata-sysextctl canary`
// with progress, withdraws the node's NFD readiness on a clean stop, and a daemon SIGKILLed while its canary runs
// leaves a container that the next start sweeps.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCanaryLayout } from "../../../src/canary/build.ts";
import { CANARY_NAMESPACE } from "../../../src/canary/ctr.ts";
import { type PrivateContainerd, startContainerd } from "../../helpers/containerd.ts";
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

const RUNC = "io.containerd.runc.v2";
const NFD = "etc/kubernetes/node-feature-discovery/features.d/kata-sysextd";
let containerd: PrivateContainerd;
let server: ReleaseServer;
let dir: string;
let root: string;
let port: number;
const images = { good: "", hang: "" };
const daemons: RunningDaemon[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kata-canary-daemon-"));
  containerd = await startContainerd();
  for (const [name, variant] of [
    ["good", {}],
    ["hang", { hang: true }],
  ] as const) {
    images[name] = join(dir, `${name}.oci.tar`);
    writeFileSync(images[name], (await buildCanaryLayout(join(dir, `${name}.bin`), variant)).tar);
  }
  const pub = join(dir, "pub");
  mkdirSync(pub);
  publishRelease(pub, {
    images: [{ version: "3.32.0", content: buildImage({ version: "3.32.0" }, join(pub, "b.raw")) }],
  });
  server = await startReleaseServer(pub);
  root = makeSandboxRoot();
  mkdirSync(join(root, "run/containerd"), { recursive: true });
  symlinkSync(containerd.address, join(root, "run/containerd/containerd.sock"));
  port = await freePort();
  configure(60);
}, 60_000);

afterAll(async () => {
  for (const d of daemons) await d.stop();
  await server?.close();
  await containerd?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function configure(timeoutSeconds: number): void {
  writeConfig(
    root,
    `[source]\nurl = "${server.url}"\n[policy]\nactivation = "force"\n[api]\nlisten = "127.0.0.1:${port}"\n` +
      `[containerd]\nenabled = false\n[health]\ncanary = true\ncanary_runtime = "${RUNC}"\n` +
      `canary_timeout_seconds = ${timeoutSeconds}\n`,
  );
}

function daemonWith(image: string): RunningDaemon {
  const daemon = startDaemon(root, { env: { KATA_SYSEXTD_CANARY_IMAGE: image } });
  daemons.push(daemon);
  return daemon;
}

const get = async (path: string) => fetch(`http://127.0.0.1:${port}${path}`);
const nfd = () => readFileSync(join(root, NFD), "utf8");

describe("the canary in the daemon", () => {
  it("proves the image it activated, reports it, runs on demand, and withdraws readiness on a clean stop", async () => {
    const daemon = daemonWith(images.good);
    const context = () => daemon.stderr();
    type Status = { canary: { handler: string; results: object[] }; lastReconcile: { result: string } | null };
    const status = async () => (await (await get("/status")).json()) as Status;
    await until("the first pass and its canary", async () => (await status()).lastReconcile?.result === "ok", context);
    expect(daemon.stderr()).toContain(`canary passed with ${RUNC}`);
    const { canary } = await status();
    expect(canary.handler).toBe(RUNC);
    expect(canary.results).toEqual([
      expect.objectContaining({ handler: RUNC, outcome: "passed", image: "kata-containers-3.32.0-x86-64.raw" }),
    ]);
    const metrics = await (await get("/metrics")).text();
    expect(metrics).toMatch(
      new RegExp(`kata_sysextd_canary_duration_seconds_count\\{handler="${RUNC}",outcome="passed"\\} 1`),
    );
    expect(metrics).toContain(`kata_sysextd_canary_passed{handler="${RUNC}"} 1`);
    // The sandbox's preflight fails (no /proc, /sys, /dev under the root); the canary is not among the reasons.
    const ready = (await (await get("/readyz")).json()) as { reasons: string[] };
    expect(ready.reasons.filter((r) => r.includes("canary"))).toEqual([]);
    expect(nfd()).toContain(`feature.node.kubernetes.io/kata-sysextd.handler.${RUNC}=true\n`);

    const ran = await runArgv([NODE, CTL, "canary", "--root", root]);
    expect(ran.code).toBe(0);
    expect(ran.stderr).toContain("canary: starting the canary container…");
    expect(ran.stdout).toMatch(new RegExp(`^canary passed with ${RUNC.replace(/\./g, "\\.")} in \\d+ ms`));
    expect(containerd.leftovers(CANARY_NAMESPACE)).toEqual({ containers: [], tasks: [], snapshots: [] });

    expect(await daemon.stop()).toBe(0);
    expect(nfd()).toContain("feature.node.kubernetes.io/kata-sysextd.ready=false\n");
  });

  it("tries a failed canary again soon: containerd may come up after the daemon", async () => {
    const socket = join(root, "run/containerd/containerd.sock");
    rmSync(socket);
    const daemon = daemonWith(images.good);
    try {
      await until(
        "the canary to fail",
        () => daemon.stderr().includes("the canary runs again in 10 s"),
        () => daemon.stderr(),
      );
      expect(daemon.stderr()).toMatch(/canary failed with io\.containerd\.runc\.v2 at start: .*containerd\.sock/);
      expect(nfd()).toContain("feature.node.kubernetes.io/kata-sysextd.ready=false\n");
    } finally {
      symlinkSync(containerd.address, socket);
    }
    await until(
      "the canary to pass",
      () => daemon.stderr().includes(`canary passed with ${RUNC}`),
      () => daemon.stderr(),
    );
    expect(nfd()).toContain("feature.node.kubernetes.io/kata-sysextd.ready=true\n");
    expect(await daemon.stop()).toBe(0);
  });

  it("sweeps at start what a daemon SIGKILLed inside its canary left in containerd", async () => {
    configure(600);
    const killed = daemonWith(images.hang);
    await until(
      "the hanging canary",
      () => containerd.leftovers(CANARY_NAMESPACE).tasks.length === 1,
      () => killed.stderr(),
    );
    killed.signal("SIGKILL");
    await killed.exited;
    const left = containerd.leftovers(CANARY_NAMESPACE);
    expect(left.containers).toHaveLength(1);

    configure(60);
    const next = daemonWith(images.good);
    await until(
      "the sweep",
      () => next.stderr().includes(`removed 1 canary container(s) left behind: ${left.containers[0]}`),
      () => next.stderr(),
    );
    await until(
      "the canary to pass",
      () => next.stderr().includes(`canary passed with ${RUNC}`),
      () => next.stderr(),
    );
    expect(containerd.leftovers(CANARY_NAMESPACE)).toEqual({ containers: [], tasks: [], snapshots: [] });
  });
});
