// `npm start` for real: the real npm running scripts/demo.ts, which builds images, serves them on 127.0.0.1 and
// runs the real daemon. Its tour (refresh, rollback, versions) shows a rollback and its hold; then every way
// of stopping it leaves no process behind: SIGTERM or SIGINT to npm, Ctrl-C (SIGINT to the whole process
// group, as a terminal sends it), and npm killed outright.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { StatusDocument } from "../../../src/status.ts";
import { freePort } from "../../helpers/net.ts";
import { descendantsOf, isRunning, procPid, readProc } from "../../helpers/proc.ts";
import { CTL, NODE, PROJECT, runArgv } from "../../helpers/sandbox.ts";

interface Demo {
  npm: ChildProcess;
  dir: string;
  port: number;
  /** What npm and the demo printed so far (the demo writes to stderr). */
  output: () => string;
  /** npm's process and every descendant (the demo, the daemon), in /proc's numbering. */
  tree: () => number[];
}

const running: Demo[] = [];

afterEach(() => {
  // A failed test must not leave a demo (or its port and folder) behind.
  for (const demo of running.splice(0)) {
    for (const pid of demo.tree()) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    rmSync(demo.dir, { recursive: true, force: true });
  }
});

async function startDemo(): Promise<Demo> {
  const dir = mkdtempSync(join(tmpdir(), "kata-demo-"));
  const port = await freePort();
  // detached: npm leads a process group of its own, as a shell's job does; the group is what Ctrl-C signals.
  const npm = spawn("npm", ["start"], {
    cwd: PROJECT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, KATA_SYSEXTD_DEMO_DIR: join(dir, "demo"), KATA_SYSEXTD_DEMO_PORT: String(port) },
  });
  let text = "";
  npm.stdout?.on("data", (chunk: Buffer) => {
    text += chunk.toString();
  });
  npm.stderr?.on("data", (chunk: Buffer) => {
    text += chunk.toString();
  });
  const npmProc = procPid(npm.pid ?? 0);
  const tree = () => (isRunning(npmProc) ? [npmProc, ...descendantsOf(npmProc)] : descendantsOf(npmProc));
  const demo: Demo = { npm, dir, port, output: () => text, tree };
  running.push(demo);
  const deadline = Date.now() + 150_000;
  while (!text.includes("demo: ready")) {
    if (npm.exitCode !== null || Date.now() > deadline) throw new Error(`the demo did not get ready:\n${text}`);
    await sleep(200);
  }
  return demo;
}

/** Waits until none of `pids` runs; returns those still running after the deadline. */
async function gone(pids: number[], ms = 30_000): Promise<number[]> {
  const deadline = Date.now() + ms;
  while (pids.some(isRunning) && Date.now() < deadline) await sleep(100);
  return pids.filter(isRunning);
}

const comm = (pid: number): string => `${pid} ${readProc(`/proc/${pid}/cmdline`).split("\0").join(" ")}`;

describe("npm start", () => {
  it("tours refresh, rollback and versions; holds show in /status; the CLI finds it; SIGTERM to npm stops all", async () => {
    const demo = await startDemo();
    const out = demo.output();
    expect(out).toContain("demo: the first pass activated kata-containers 3.31.1");
    expect(out).toContain("$ kata-sysextctl refresh");
    expect(out).toContain("ok: kata-containers 3.32.0 active");
    expect(out).toContain("$ kata-sysextctl rollback");
    expect(out).toContain("ok: kata-containers 3.31.1 active");
    expect(out).toMatch(/ {4}3\.32\.0 {7}\S+kata-containers-3\.32\.0-x86-64\.raw {2}\(held\)/);
    expect(out).not.toMatch(/^degraded$/m);

    const status = (await (await fetch(`http://127.0.0.1:${demo.port}/status`)).json()) as StatusDocument;
    expect(status.extension.active).toBe("3.31.1");
    expect(status.members[0]?.held).toEqual(["3.32.0"]);

    // The environment variable the demo prints points the CLI at it, without --root.
    const root = /export KATA_SYSEXTD_ROOT=(\S+)/.exec(out)?.[1] ?? "";
    expect(root).toBe(join(demo.dir, "demo/root"));
    const ctl = await runArgv([NODE, CTL, "status"], { env: { ...process.env, KATA_SYSEXTD_ROOT: root } });
    expect(ctl.code, ctl.stderr).toBe(0);
    expect(ctl.stdout).toContain("held       kata-containers 3.32.0");

    const tree = demo.tree();
    expect(tree.length, tree.map(comm).join("\n")).toBeGreaterThanOrEqual(3); // npm, the demo, the daemon
    process.kill(demo.npm.pid ?? 0, "SIGTERM");
    expect(await gone(tree), tree.map(comm).join("\n")).toEqual([]);
    expect(demo.output()).toContain("demo: stopping (SIGTERM)");
  }, 240_000);

  it.each([
    ["SIGINT to npm's PID", (npm: number) => process.kill(npm, "SIGINT"), "demo: stopping (SIGINT)"],
    ["Ctrl-C: SIGINT to the process group", (npm: number) => process.kill(-npm, "SIGINT"), "demo: stopping (SIGINT)"],
    [
      "npm killed (SIGKILL)",
      (npm: number) => process.kill(npm, "SIGKILL"),
      "demo: stopping (its parent process is gone)",
    ],
  ])(
    "%s stops the demo and the daemon",
    async (_how, signal, said) => {
      const demo = await startDemo();
      const tree = demo.tree();
      expect(tree.length).toBeGreaterThanOrEqual(3);
      signal(demo.npm.pid ?? 0);
      expect(await gone(tree), tree.map(comm).join("\n")).toEqual([]);
      expect(demo.output()).toContain(said);
    },
    240_000,
  );
});
