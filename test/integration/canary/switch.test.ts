// The canary as the last health stage of a switch, through the wired Reconciler on a --root sandbox, against a
// real containerd 1.6 with runc (Kata's shim cannot run here). [containerd] enabled = false (no registration
// under --root) and [health] canary = true set explicitly. A runtime that does not exist, a canary that prints the
// wrong marker, and one that hangs each end with the previous image active, the new one held, the node's NFD
// feature file saying "not ready", and nothing left in containerd.
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCanaryLayout } from "../../../src/canary/build.ts";
import type { CanaryResult } from "../../../src/canary/canary.ts";
import { CANARY_NAMESPACE } from "../../../src/canary/ctr.ts";
import { hostPaths } from "../../../src/paths.ts";
import { type PrivateContainerd, startContainerd } from "../../helpers/containerd.ts";
import { buildImage } from "../../helpers/images.ts";
import { reconcilerOn, unobservedSysext } from "../../helpers/reconciler.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import { makeSandboxRoot, writeConfig } from "../../helpers/sandbox.ts";

const RUNC = "io.containerd.runc.v2";
const NFD = "etc/kubernetes/node-feature-discovery/features.d/kata-sysextd";
const OLD = "kata-containers-3.32.0-x86-64.raw";
const NEW = "kata-containers-3.33.0-x86-64.raw";

let containerd: PrivateContainerd;
let dir: string;
let server: ReleaseServer;
const images = { good: "", wrong: "", hang: "" };
const roots: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kata-canary-switch-"));
  containerd = await startContainerd();
  const variants = { good: {}, wrong: { marker: "not the canary" }, hang: { hang: true } };
  for (const [name, variant] of Object.entries(variants) as [keyof typeof images, object][]) {
    images[name] = join(dir, `${name}.oci.tar`);
    writeFileSync(images[name], (await buildCanaryLayout(join(dir, `${name}.bin`), variant)).tar);
  }
  const pub = join(dir, "pub");
  mkdirSync(pub);
  const published = ["3.32.0", "3.33.0"].map((version) => ({
    version,
    content: buildImage({ version }, join(pub, "build", `${version}.raw`)),
  }));
  publishRelease(pub, { images: published });
  server = await startReleaseServer(pub);
}, 60_000);

afterAll(async () => {
  await server?.close();
  await containerd?.stop();
  for (const root of roots) rmSync(root, { recursive: true, force: true });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A sandbox root whose /run/containerd/containerd.sock is the private containerd's socket. */
function sandbox(runtime: string): string {
  const root = makeSandboxRoot();
  roots.push(root);
  mkdirSync(join(root, "run/containerd"), { recursive: true });
  symlinkSync(containerd.address, join(root, "run/containerd/containerd.sock"));
  configure(root, runtime, "<3.33.0");
  return root;
}

/**
 * The sandbox's configuration; `versions` pins 3.32.0 for the first pass, and lifting it brings 3.33.0. Activation
 * is forced: other tests on this machine run stand-in Kata shims, and a switch must not wait for them.
 */
function configure(root: string, runtime: string, versions = ">=3.21.0"): void {
  writeConfig(
    root,
    `[source]\nurl = "${server.url}"\n[policy]\nversions = "${versions}"\nactivation = "force"\n[containerd]\nenabled = false\n` +
      `[health]\ncanary = true\ncanary_runtime = "${runtime}"\ncanary_timeout_seconds = 3\n`,
  );
}

const linked = (root: string) => readlinkSync(join(root, "etc/extensions/kata-containers.raw")).split("/").pop();
const nfd = (root: string) => readFileSync(join(root, NFD), "utf8");
const nothingLeft = () =>
  expect(containerd.leftovers(CANARY_NAMESPACE)).toEqual({ containers: [], tasks: [], snapshots: [] });

async function activeOld(root: string): Promise<CanaryResult[]> {
  const results: CanaryResult[] = [];
  const reconciler = await reconcilerOn(root, {
    sysext: unobservedSysext(),
    preflight: null,
    canaryImage: images.good,
    onProgress: (e) => void (e.kind === "canary" && results.push(e.result)),
  });
  const outcome = await reconciler.run({ kind: "reconcile" });
  expect(outcome.error).toBeNull();
  expect(linked(root)).toBe(OLD);
  return results;
}

describe("the canary as the last stage of a switch", () => {
  it("passes with runc: the switch stands and the node is labelled ready with the handler", async () => {
    const root = sandbox(RUNC);
    const results = await activeOld(root);
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ outcome: "passed", handler: RUNC, image: OLD });
    expect(nfd(root)).toContain("feature.node.kubernetes.io/kata-sysextd.ready=true\n");
    expect(nfd(root)).toContain("feature.node.kubernetes.io/kata-sysextd.version=3.32.0\n");
    expect(nfd(root)).toContain(`feature.node.kubernetes.io/kata-sysextd.handler.${RUNC}=true\n`);
    nothingLeft();
  });

  it("without a canary, labels the node ready once Kata is active, and names no handler", async () => {
    const root = sandbox(RUNC);
    writeConfig(
      root,
      `[source]\nurl = "${server.url}"\n[policy]\nactivation = "force"\n[containerd]\nenabled = false\n`,
    );
    const reconciler = await reconcilerOn(root, { sysext: unobservedSysext(), preflight: null });
    expect((await reconciler.run({ kind: "reconcile" })).error).toBeNull();
    expect(linked(root)).toBe(NEW);
    expect(nfd(root)).toBe(
      "# Written by kata-sysextd: this node's Kata readiness. Do not edit; it is rewritten.\n" +
        "feature.node.kubernetes.io/kata-sysextd.ready=true\nfeature.node.kubernetes.io/kata-sysextd.version=3.33.0\n",
    );
  });

  it.each([
    [
      "a runtime that does not exist",
      "io.containerd.nonexistent.v2",
      "good",
      "start",
      'binary not installed "containerd-shim-nonexistent-v2"',
    ],
    ["a canary that prints the wrong marker", RUNC, "wrong", "output", 'printed "not the canary kernel='],
    ["a canary that hangs", RUNC, "hang", "timeout", "no exit within 3 s"],
  ] as const)(
    "%s undoes the switch, holds the image and withdraws readiness",
    async (_what, runtime, image, step, text) => {
      const root = sandbox(RUNC);
      await activeOld(root);
      configure(root, runtime);
      const results: CanaryResult[] = [];
      const reconciler = await reconcilerOn(root, {
        sysext: unobservedSysext(),
        preflight: null,
        canaryImage: images[image],
        onProgress: (e) => void (e.kind === "canary" && results.push(e.result)),
      });
      const outcome = await reconciler.run({ kind: "reconcile" });
      expect(outcome.result).toBe("failed");
      expect(outcome.error?.code).toBe("canary-failed");
      expect(outcome.error?.message).toContain(`failed at ${step}`);
      expect(outcome.error?.message).toContain(text);
      expect(results).toEqual([expect.objectContaining({ outcome: "failed", step, image: NEW })]);
      expect(linked(root)).toBe(OLD);
      const state = JSON.parse(readFileSync(hostPaths(root).stateFile, "utf8"));
      expect(state.held).toEqual({ "kata-containers": [NEW] });
      expect(nfd(root)).toBe(
        "# Written by kata-sysextd: this node's Kata readiness. Do not edit; it is rewritten.\n" +
          "feature.node.kubernetes.io/kata-sysextd.ready=false\n",
      );
      nothingLeft();
    },
  );
});
