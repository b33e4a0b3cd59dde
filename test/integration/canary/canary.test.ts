// The canary against a real containerd 1.6 and real runc (Debian's), started by the test with its own root, state
// and socket. Kata's shim cannot run here, so the runtime is io.containerd.runc.v2; a runtime that does not exist,
// a program with the wrong marker and one that hangs cover the failures. After every run nothing is left in
// containerd but the image, and a canary whose daemon was SIGKILLed is swept by the next one.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCanaryLayout } from "../../../src/canary/build.ts";
import { CANARY_ID_PREFIX, type CanaryPhase, canary } from "../../../src/canary/canary.ts";
import { CANARY_NAMESPACE, ctrClient } from "../../../src/canary/ctr.ts";
import { systemClock, systemRandom } from "../../../src/clock.ts";
import { createLogger } from "../../../src/log/logger.ts";
import { type PrivateContainerd, startContainerd } from "../../helpers/containerd.ts";
import { until } from "../../helpers/sandbox.ts";

const RUNC = "io.containerd.runc.v2";
let containerd: PrivateContainerd;
let dir: string;
const images = { good: "", wrong: "", hang: "" };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kata-canary-"));
  containerd = await startContainerd();
  const variants = { good: {}, wrong: { marker: "hello from somewhere else" }, hang: { hang: true } };
  for (const [name, variant] of Object.entries(variants) as [keyof typeof images, object][]) {
    const layout = await buildCanaryLayout(join(dir, `${name}.bin`), variant);
    images[name] = join(dir, `${name}.oci.tar`);
    writeFileSync(images[name], layout.tar);
  }
}, 60_000);

afterAll(async () => {
  await containerd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function canaryFor(imageFile: string) {
  return canary({
    containerd: ctrClient(containerd.address, join(dir, "fifo")),
    imageFile,
    clock: systemClock,
    random: systemRandom,
    log: createLogger(() => undefined),
  });
}

const request = (runtime = RUNC, timeoutMs = 30_000, onProgress?: (p: CanaryPhase) => void) => ({
  handler: runtime,
  runtime,
  runtimeConfigPath: null,
  timeoutMs,
  image: "kata-containers-3.32.0-x86-64.raw",
  onProgress,
});

const nothingLeft = () =>
  expect(containerd.leftovers(CANARY_NAMESPACE)).toEqual({ containers: [], tasks: [], snapshots: [] });

describe("canary on a real containerd with runc", () => {
  it("imports the image when it is missing, passes on the marker, and leaves only the image", async () => {
    const phases: CanaryPhase[] = [];
    const result = await canaryFor(images.good).run(request(RUNC, 30_000, (p) => phases.push(p)));
    expect(result).toMatchObject({ outcome: "passed", step: null, reason: null, handler: RUNC });
    expect(result.output).toMatch(/^kata-sysextd-canary: ok kernel=\S+$/);
    expect(phases).toEqual(["start", "import", "start"]);
    expect(containerd.ctr(CANARY_NAMESPACE, "images", "list", "--quiet")).toMatch(/^localhost\/kata-sysextd\/canary:/);
    nothingLeft();

    // Present now: one start, no import.
    const again: CanaryPhase[] = [];
    expect((await canaryFor(images.good).run(request(RUNC, 30_000, (p) => again.push(p)))).outcome).toBe("passed");
    expect(again).toEqual(["start"]);
    nothingLeft();
  });

  it("fails at the start with containerd's own words when the runtime does not exist", async () => {
    const result = await canaryFor(images.good).run(request("io.containerd.nonexistent.v2"));
    expect(result).toMatchObject({ outcome: "failed", step: "start" });
    expect(result.reason).toContain("io.containerd.nonexistent.v2");
    expect(result.reason).toContain('binary not installed "containerd-shim-nonexistent-v2"');
    nothingLeft();
  });

  it("fails on output that is not the marker", async () => {
    const result = await canaryFor(images.wrong).run(request());
    expect(result).toMatchObject({ outcome: "failed", step: "output" });
    expect(result.reason).toContain('printed "hello from somewhere else kernel=');
    nothingLeft();
  });

  it("fails after the timeout on a canary that hangs, and removes its running task", async () => {
    const result = await canaryFor(images.hang).run(request(RUNC, 2_000));
    expect(result).toMatchObject({ outcome: "failed", step: "timeout" });
    expect(result.reason).toContain("no exit within 2 s");
    expect(result.durationMs).toBeGreaterThanOrEqual(2_000);
    nothingLeft();
  });

  it("fails at the image step when the shipped image is not there", async () => {
    const result = await canaryFor(join(dir, "missing.oci.tar")).run(request());
    expect(result).toMatchObject({ outcome: "failed", step: "image" });
    expect(result.reason).toContain("missing.oci.tar");
    nothingLeft();
  });

  it("sweeps the container, task and snapshot of a canary whose process was SIGKILLed", async () => {
    // A process that runs the hanging canary, killed while it waits, as a daemon killed by systemd would be.
    const script = [
      `import { canary } from ${JSON.stringify(join(import.meta.dirname, "../../../src/canary/canary.ts"))};`,
      `import { ctrClient } from ${JSON.stringify(join(import.meta.dirname, "../../../src/canary/ctr.ts"))};`,
      `import { systemClock, systemRandom } from ${JSON.stringify(join(import.meta.dirname, "../../../src/clock.ts"))};`,
      `import { createLogger } from ${JSON.stringify(join(import.meta.dirname, "../../../src/log/logger.ts"))};`,
      `const c = canary({ containerd: ctrClient(${JSON.stringify(containerd.address)}, ${JSON.stringify(join(dir, "fifo"))}), imageFile: ${JSON.stringify(images.hang)}, clock: systemClock, random: systemRandom, log: createLogger(() => undefined) });`,
      `await c.run({ handler: "runc", runtime: "${RUNC}", runtimeConfigPath: null, timeoutMs: 600000, image: null });`,
    ].join("\n");
    const file = join(dir, "killed.mts");
    writeFileSync(file, script);
    const child = spawn(process.execPath, [file], { stdio: "ignore" });
    try {
      await until("the canary task to run", () => containerd.leftovers(CANARY_NAMESPACE).tasks.length === 1);
    } finally {
      child.kill("SIGKILL");
    }
    const left = containerd.leftovers(CANARY_NAMESPACE);
    expect(left.containers).toHaveLength(1);
    expect(left.containers[0]).toMatch(new RegExp(`^${CANARY_ID_PREFIX}`));
    expect(left.snapshots).toHaveLength(1);

    const swept = await canaryFor(images.good).sweep();
    expect(swept).toEqual(left.containers);
    nothingLeft();
  });
});
