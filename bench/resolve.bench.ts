// Resolving against a 10,000-entry SHA256SUMS: parse the manifest text and pick the newest acceptable version
// under a policy with constraints. The target is under 50 ms; the median of several runs is reported.
import { parseManifest } from "../src/release/manifest.ts";
import type { ReleaseMetadata } from "../src/release/metadata.ts";
import { parseHostRelease } from "../src/release/os-release.ts";
import { resolve } from "../src/release/resolve.ts";

const ENTRIES = 10_000;
const RUNS = 15;

export async function benchResolve(): Promise<{ name: string; ms: number; entries: number }> {
  const arches = ["x86-64", "arm64"];
  const lines: string[] = [];
  for (let i = 0; i < ENTRIES; i++) {
    const version = `${3 + (i % 3)}.${Math.floor(i / 6) % 100}.${Math.floor(i / 600)}`;
    const arch = arches[i % 2] ?? "x86-64";
    lines.push(`${i.toString(16).padStart(64, "0")}  kata-containers-${version}-${arch}.raw`);
  }
  const text = `${lines.join("\n")}\n`;
  const host = parseHostRelease("ID=flatcar\nVERSION_ID=4593.2.5\nSYSEXT_LEVEL=1.0\n");
  const metadata: ReleaseMetadata = {
    constraints: [{ kata: ">=5.0.0", flatcar: ">=9999.0.0", reason: "bench: rules out the newest line" }],
    withdrawn: [{ kata: "4.99.x", reason: "bench" }],
    requires: [],
    kernels: [],
    problems: [],
  };
  const policy = {
    versions: ">=3.21.0 <6.0.0",
    constraints: [{ kata: ">=4.0.0", flatcar: ">=4459.0.0", reason: "bench" }],
  };

  const times: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const start = performance.now();
    const manifest = parseManifest(text);
    const result = resolve({
      host,
      arch: "x86-64",
      name: "kata-containers",
      manifest: manifest.entries,
      installed: ["3.30.0"],
      policy,
      metadata,
    });
    times.push(performance.now() - start);
    if (!result.ok || manifest.entries.length !== ENTRIES) throw new Error("bench: resolve found nothing");
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)] ?? Number.NaN;
  return { name: "resolve: parse SHA256SUMS and pick (median)", ms: Math.round(median * 100) / 100, entries: ENTRIES };
}

if (import.meta.main) console.log(await benchResolve());
