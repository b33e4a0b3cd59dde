// Daemon start to first 200 on /status: the real `bin/kata-sysextd.js` on a sandbox root, polled over TCP.
// The first start fills Node's compile cache (enabled by the launcher); later starts are what a restart costs.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../test/helpers/net.ts";
import { DAEMON, makeSandboxRoot, NODE, writeConfig } from "../test/helpers/sandbox.ts";
import { median } from "./stats.ts";

export interface StartBench {
  coldMs: number;
  warmMs: number[];
  warmMedianMs: number;
}

function ok(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/status", timeout: 200 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

async function once(root: string, port: number, cacheDir: string): Promise<number> {
  const started = performance.now();
  const child = spawn(NODE, [DAEMON, "--root", root], {
    stdio: "ignore",
    env: { ...process.env, KATA_SYSEXTD_LOG: "stderr", NODE_COMPILE_CACHE: cacheDir },
  });
  try {
    for (let i = 0; i < 2000; i++) {
      if (await ok(port)) return performance.now() - started;
      await new Promise((r) => setTimeout(r, 2));
    }
    throw new Error("the daemon never answered /status");
  } finally {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  }
}

export async function benchStart(runs = 5): Promise<StartBench> {
  const root = makeSandboxRoot();
  const cacheDir = mkdtempSync(join(tmpdir(), "kata-bench-start-cache-"));
  const port = await freePort();
  // An unreachable source: the first pass fails in the background; /status must not wait for it.
  writeConfig(
    root,
    `[source]\nurl = "http://127.0.0.1:9/"\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`,
  );
  try {
    const coldMs = await once(root, port, cacheDir);
    const warmMs: number[] = [];
    for (let i = 0; i < runs; i++) warmMs.push(await once(root, port, cacheDir));
    return { coldMs, warmMs, warmMedianMs: median(warmMs) };
  } finally {
    rmSync(root, { recursive: true, force: true });
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

if (import.meta.main) console.log(await benchStart());
