// The canary against `ctr run --rm` of the same image with the same runtime (runc here: Kata's shim cannot run on
// these machines), on a private containerd 1.6. The image is imported once before timing, so both sides run a
// present image; what the canary adds is its own bookkeeping and one `ctr` process, nothing more.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildCanaryLayout } from "../src/canary/build.ts";
import { canary } from "../src/canary/canary.ts";
import { CANARY_NAMESPACE, ctrClient } from "../src/canary/ctr.ts";
import { canaryProbe } from "../src/canary/probe.ts";
import { systemClock, systemRandom } from "../src/clock.ts";
import { createLogger } from "../src/log/logger.ts";
import { startContainerd } from "../test/helpers/containerd.ts";

const RUNC = "io.containerd.runc.v2";

export interface CanaryBench {
  runs: number;
  canaryMedianMs: number;
  ctrMedianMs: number;
  ratio: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

function ctrRun(address: string, ref: string, id: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      "ctr",
      ["--address", address, "--namespace", CANARY_NAMESPACE, "run", "--rm", "--runtime", RUNC, ref, id],
      (err, stdout) => (err ? reject(err) : stdout.startsWith("kata-sysextd-canary: ok") ? resolve() : reject(stdout)),
    );
  });
}

export async function benchCanary(runs = 15): Promise<CanaryBench> {
  const dir = mkdtempSync(join(tmpdir(), "kata-bench-canary-"));
  const containerd = await startContainerd();
  try {
    const layout = await buildCanaryLayout(join(dir, "canary.bin"));
    const imageFile = join(dir, "canary.oci.tar");
    writeFileSync(imageFile, layout.tar);
    const probe = canaryProbe({
      canary: canary({
        containerd: ctrClient(containerd.address, join(dir, "fifo")),
        imageFile,
        clock: systemClock,
        random: systemRandom,
        log: createLogger(() => undefined),
      }),
      runtime: RUNC,
      timeoutSeconds: 60,
      host: (path) => path,
    });
    // Untimed: the import, the sweep of this process's first run, and a warm-up of both sides.
    const first = await probe.run(null);
    if (first.outcome !== "passed") throw new Error(`canary failed: ${first.reason}`);
    await ctrRun(containerd.address, layout.ref, "bench-warm");
    const ours: number[] = [];
    const theirs: number[] = [];
    // Interleaved, so a slow moment of the machine hits both sides alike.
    for (let i = 0; i < runs; i++) {
      let t = performance.now();
      const result = await probe.run(null);
      ours.push(performance.now() - t);
      if (result.outcome !== "passed") throw new Error(`canary failed: ${result.reason}`);
      t = performance.now();
      await ctrRun(containerd.address, layout.ref, `bench-${i}`);
      theirs.push(performance.now() - t);
    }
    const canaryMedianMs = median(ours);
    const ctrMedianMs = median(theirs);
    return { runs, canaryMedianMs, ctrMedianMs, ratio: canaryMedianMs / ctrMedianMs };
  } finally {
    await containerd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) console.log(await benchCanary());
