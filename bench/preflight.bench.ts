// How long a full preflight takes with a payload present: this machine's real /proc, /sys and /dev, the real
// kvm-probe helper, and a merged-style payload of real ELF executables (each run with --version, each checked
// against this host's glibc). Target: under 250 ms.
import { rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostPaths } from "../src/paths.ts";
import { runPreflight } from "../src/preflight/run.ts";
import { buildPayload } from "../test/fixtures/preflight/hosts.ts";
import { ensureHelpers } from "../test/fixtures/preflight/toolchain.ts";

export async function benchPreflight(): Promise<{ name: string; ms: number }> {
  ensureHelpers();
  const dir = await mkdtemp(join(tmpdir(), "kata-preflight-bench-"));
  try {
    const payloadRoot = buildPayload(dir, { hypervisors: ["qemu", "clh", "firecracker"] });
    const paths = hostPaths("/");
    await runPreflight({ paths, payloadRoot }); // warm-up: module loading and the page cache are not the subject
    const runs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      await runPreflight({ paths, payloadRoot });
      runs.push(performance.now() - started);
    }
    runs.sort((a, b) => a - b);
    const median = runs[Math.floor(runs.length / 2)] ?? Number.NaN;
    return {
      name: "preflight: full run with a payload (3 hypervisors), median of 5",
      ms: Math.round(median * 10) / 10,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) console.log(await benchPreflight());
