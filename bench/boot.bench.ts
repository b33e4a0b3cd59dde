// `kata-sysextd boot` with nothing to relink (the common boot) against `node -e 0`, whole processes, alternated
// run by run so that a change in background load hits both alike. Both with a warm compile cache of their own,
// as the launcher enables it on a host from the second boot on.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DAEMON, NODE } from "../test/helpers/sandbox.ts";
import { installedRoot } from "./installed.ts";
import { median, round } from "./stats.ts";

export interface BootBench {
  /** Median whole-process times, ms. */
  bootMs: number;
  nodeMs: number;
  /** bootMs / nodeMs; the target is at most 2. */
  ratio: number;
  runs: number;
}

function timed(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const [file, ...args] = argv;
    if (file === undefined) throw new Error("empty argv");
    const child = spawn(file, args, { stdio: ["ignore", "ignore", "pipe"], env });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.once("error", reject);
    child.once("exit", (code) => {
      const ms = performance.now() - started;
      if (code === 0) resolve(ms);
      else reject(new Error(`${argv.join(" ")} exited ${code}:\n${stderr}`));
    });
  });
}

export async function benchBoot(runs = 21): Promise<BootBench> {
  const installed = await installedRoot();
  const cache = mkdtempSync(join(tmpdir(), "kata-bench-boot-cache-"));
  const env = { ...process.env, KATA_SYSEXTD_LOG: "stderr", NODE_COMPILE_CACHE: cache };
  const boot = [NODE, DAEMON, "boot", "--root", installed.root];
  const bare = [NODE, "-e", "0"];
  try {
    const linked = installed.activeLink();
    await timed(boot, env); // fills the compile cache
    await timed(bare, env);
    const bootMs: number[] = [];
    const nodeMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      nodeMs.push(await timed(bare, env));
      bootMs.push(await timed(boot, env));
    }
    if (installed.activeLink() !== linked) throw new Error("the boot step relinked; the bench wants nothing to do");
    const boots = median(bootMs);
    const nodes = median(nodeMs);
    return { bootMs: round(boots), nodeMs: round(nodes), ratio: round(boots / nodes, 2), runs };
  } finally {
    rmSync(cache, { recursive: true, force: true });
    await installed.close();
  }
}

if (import.meta.main) console.log(await benchBoot());
