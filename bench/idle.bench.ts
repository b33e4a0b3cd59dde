// Resident memory of the idle daemon (the real bin/kata-sysextd.js on a sandbox root, after a first pass that
// found nothing to do) against a bare fastify server on the same runtime, both read from /proc after they answered
// a request and settled. Both run at the same time, so they see the same machine.
import { type ChildProcess, spawn } from "node:child_process";
import { request } from "node:http";
import { join } from "node:path";
import { childrenOf, procPid, readProc } from "../test/helpers/proc.ts";
import { NODE, startDaemon, until } from "../test/helpers/sandbox.ts";
import { installedRoot } from "./installed.ts";
import { median, round } from "./stats.ts";

export interface IdleBench {
  daemonMiB: number;
  fastifyMiB: number;
  /** daemonMiB / fastifyMiB; the target is at most 1.2. */
  ratio: number;
}

const MiB = 1024 * 1024;

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, timeout: 2000 }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => {
        body += d.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.end();
  });
}

/** VmRSS of a process (this process's PID numbering), from /proc. */
function rss(pid: number): number {
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(readProc(`/proc/${procPid(pid)}/status`))?.[1];
  if (kib === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kib) * 1024;
}

/** Median of a few samples a second apart, once the process is idle. */
async function settledRss(pid: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    samples.push(rss(pid));
  }
  return median(samples);
}

async function startFastify(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(NODE, [join(import.meta.dirname, "bare-fastify.mjs")], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once("exit", (code) => reject(new Error(`bare fastify exited ${code}`)));
  });
  return { child, port };
}

export async function benchIdle(): Promise<IdleBench> {
  const installed = await installedRoot();
  const daemon = startDaemon(installed.root);
  let fastify: { child: ChildProcess; port: number } | null = null;
  try {
    await until(
      "the daemon's first pass",
      async () => {
        const res = await get(installed.port, "/status");
        const status = JSON.parse(res.body) as { lastReconcile: { result: string } | null; state: string };
        // degraded: the preflight fails on a sandbox root without /proc, /sys and /dev under it; it runs all the same.
        const idle = status.state === "idle" || status.state === "degraded";
        return res.status === 200 && status.lastReconcile?.result === "ok" && idle;
      },
      daemon.stderr,
      60_000,
    );
    fastify = await startFastify();
    const served = await get(fastify.port, "/");
    if (served.status !== 200) throw new Error(`bare fastify answered ${served.status}`);
    // The daemon runs under unshare, as the first process of its own PID namespace: unshare's child.
    const [daemonPid] = daemon.child.pid === undefined ? [] : childrenOf(daemon.child.pid);
    if (daemonPid === undefined || fastify.child.pid === undefined) throw new Error("a process did not start");
    const [daemonRss, fastifyRss] = await Promise.all([settledRss(daemonPid), settledRss(fastify.child.pid)]);
    return {
      daemonMiB: round(daemonRss / MiB),
      fastifyMiB: round(fastifyRss / MiB),
      ratio: round(daemonRss / fastifyRss, 2),
    };
  } finally {
    fastify?.child.kill("SIGTERM");
    await daemon.stop();
    await installed.close();
  }
}

if (import.meta.main) console.log(await benchIdle());
