// `kata-sysextctl preflight` in-process, against fixture roots: exit codes, JSON, human output and colour.
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { preflightCommand } from "../../../src/cli/preflight.ts";
import { buildHost, buildPayload } from "../../fixtures/preflight/hosts.ts";
import { ensureHelpers } from "../../fixtures/preflight/toolchain.ts";

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

async function ctl(argv: string[], isTTY = false): Promise<Ran> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: string[] = [];
  const err: string[] = [];
  stdout.on("data", (d: Buffer) => out.push(d.toString()));
  stderr.on("data", (d: Buffer) => err.push(d.toString()));
  const code = await preflightCommand(argv, { stdout, stderr, isTTY });
  return { code, stdout: out.join(""), stderr: err.join("") };
}

const roots: string[] = [];
let good: string;
let noVsock: string;

beforeAll(() => {
  ensureHelpers();
  good = buildPayload(buildHost({}));
  noVsock = buildPayload(buildHost({ devices: ["/dev/net/tun", "/dev/vhost-net"] }));
  roots.push(good, noVsock);
});
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

describe("kata-sysextctl preflight", () => {
  it("exits 0 when nothing failed and prints grouped checks with one verdict line per hypervisor", async () => {
    const r = await ctl(["--root", good]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    const lines = r.stdout.split("\n");
    for (const title of ["Virtualisation", "Devices", "Kata payload", "Binary compatibility (ABI)", "SELinux"]) {
      expect(lines).toContain(title);
    }
    expect(lines.indexOf("Virtualisation")).toBeLessThan(lines.indexOf("Host integration"));
    expect(r.stdout).toMatch(/^ {2}PASS {2}kvm-usable +\/dev\/kvm: API 12/m);
    expect(r.stdout).toMatch(/^ {2}WARN {2}opt-readonly +the extension ships \/opt\/kata/m);
    expect(r.stdout).toMatch(/^ +-> keep other software's writable data out of \/opt/m);
    const verdict = lines.slice(lines.indexOf("Verdict") + 1).filter((l) => l !== "");
    expect(verdict.slice(0, 2)).toEqual(["  clh: ready (1 warning)", "  qemu: ready (1 warning)"]);
    expect(verdict[2]).toMatch(/^ {2}0 failed, 1 warning, \d+ checks in \d+ ms$/);
    expect(r.stdout).not.toContain("\u001b[");
  });

  it("exits 1 when a check failed; the verdict names what failed for which hypervisor", async () => {
    const r = await ctl(["--root", noVsock]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^ {2}FAIL {2}vhost-vsock \[qemu\] +\/dev\/vhost-vsock missing/m);
    expect(r.stdout).toContain("  qemu: cannot run Kata: vhost-vsock failed\n");
    expect(r.stdout).toContain("  clh: ready (1 warning)\n");
  });

  it("--json prints the report: summary counts, checks with groups, hypervisor verdicts", async () => {
    const r = await ctl(["--json", "--root", noVsock]);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as {
      ok: boolean;
      failed: number;
      warnings: number;
      checks: Array<{ id: string; status: string; group: string; hypervisor: string | null; remedy: string | null }>;
      hypervisors: Array<{ name: string; ok: boolean; verdict: string }>;
    };
    expect(doc.ok).toBe(false);
    expect(doc.failed).toBe(doc.checks.filter((c) => c.status === "fail").length);
    expect(doc.hypervisors).toEqual([
      { name: "clh", ok: true, verdict: "clh: ready (1 warning)" },
      { name: "qemu", ok: false, verdict: "qemu: cannot run Kata: vhost-vsock failed" },
    ]);
    const vsock = doc.checks.find((c) => c.id === "vhost-vsock" && c.hypervisor === "qemu");
    expect(vsock).toMatchObject({ status: "fail", group: "devices" });
    expect(vsock?.remedy).toContain("modprobe vhost_vsock");
    for (const c of doc.checks.filter((x) => x.status === "warn" || x.status === "fail")) {
      expect(c.remedy, `${c.id} has a remedy`).toBeTruthy();
    }
  });

  it("colours only on a terminal", async () => {
    const r = await ctl(["--root", noVsock], true);
    expect(r.stdout).toContain("\u001b[31mFAIL\u001b[0m");
    expect(r.stdout).toContain("\u001b[32mPASS\u001b[0m");
  });

  it("takes the containerd registration files from --config", async () => {
    const config = join(good, "etc/kata-sysextd/alt.toml");
    mkdirSync(join(good, "etc/kata-sysextd"), { recursive: true });
    writeFileSync(config, '[containerd]\nconfig_file = "/etc/kata-sysextd/elsewhere.toml"\n');
    const r = await ctl(["--json", "--root", good, "--config", config]);
    const doc = JSON.parse(r.stdout) as { checks: Array<{ id: string; status: string; detail: string }> };
    // The fixture's containerd reads the default file, which registers Kata, but not the one configured here.
    expect(doc.checks.find((c) => c.id === "containerd-handler")).toMatchObject({
      status: "warn",
      detail: expect.stringMatching(
        /reads \/etc\/kata-sysextd\/containerd\.toml, which registers kata, kata-clh .* not \/etc\/kata-sysextd\/elsewhere\.toml/,
      ),
    });
    writeFileSync(config, "[containerd]\nenabled = false\n");
    const off = JSON.parse((await ctl(["--json", "--root", good, "--config", config])).stdout) as typeof doc;
    expect(off.checks.find((c) => c.id === "containerd-handler")?.status).toBe("skip");
  });

  it("runs as the real `kata-sysextctl preflight` executable", () => {
    const bin = join(import.meta.dirname, "../../../bin/kata-sysextctl.js");
    const ran = spawnSync(process.execPath, [bin, "preflight", "--json", "--root", noVsock], { encoding: "utf8" });
    expect(ran.status).toBe(1);
    const doc = JSON.parse(ran.stdout) as { ok: boolean; hypervisors: Array<{ name: string; ok: boolean }> };
    expect(doc.ok).toBe(false);
    expect(doc.hypervisors).toEqual([
      expect.objectContaining({ name: "clh", ok: true }),
      expect.objectContaining({ name: "qemu", ok: false }),
    ]);
  });

  it("exits 2 on usage and configuration errors", async () => {
    const unknown = await ctl(["--frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("Usage: kata-sysextctl preflight");
    expect((await ctl(["extra"])).code).toBe(2);
    const bad = join(good, "etc/kata-sysextd/bad.toml");
    writeFileSync(bad, "[containerd]\nconfig_file = 3\n");
    const r = await ctl(["--root", good, "--config", bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("config_file");
    const help = await ctl(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--root DIR");
  });
});
