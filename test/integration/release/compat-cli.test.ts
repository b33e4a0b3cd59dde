// kata-sysextctl compat over real files: exit codes, JSON shape and human output as docs/interface.md states them.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { compatCommand } from "../../../src/cli/compat.ts";
import { run } from "../../../src/exec.ts";

const dir = mkdtempSync(join(tmpdir(), "kata-compat-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: string): string => {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
};

const osRelease = file("os-release", "ID=flatcar\nID_LIKE=coreos\nVERSION_ID=4593.2.5\nSYSEXT_LEVEL=1.0\n");
const bakery = file("extension-release.kata-containers", "ID=_any\nARCHITECTURE=x86-64\nEXTENSION_RELOAD_MANAGER=1\n");
const pinned = file("pinned", "ID=flatcar\nSYSEXT_LEVEL=2.0\n");

async function compat(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await compatCommand(argv, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
  });
  return { code, stdout, stderr };
}

describe("kata-sysextctl compat", () => {
  it("exits 0 and prints JSON for a compatible extension", async () => {
    const r = await compat("--os-release", osRelease, "--extension-release", bakery, "--arch", "x86-64", "--json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      compatible: true,
      reasons: ['ID: "_any" matches every host; VERSION_ID and SYSEXT_LEVEL are not checked'],
    });
    expect(r.stderr).toBe("");
  });

  it("exits 1 and names the deciding field", async () => {
    const r = await compat("--os-release", osRelease, "--extension-release", bakery, "--arch", "arm64", "--json");
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({
      compatible: false,
      reasons: ['ARCHITECTURE: extension is for "x86-64", host is "arm64"'],
    });
  });

  it("prints a human answer without --json", async () => {
    const r = await compat("--os-release", osRelease, "--extension-release", pinned, "--arch", "x86-64");
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(
      "not compatible: systemd-sysext would not merge kata-containers on flatcar 4593.2.5 (x86-64)\n" +
        '  SYSEXT_LEVEL: extension has "2.0", host has "1.0"\n',
    );
  });

  it("defaults --arch to this machine and --name to the release file's name", async () => {
    const r = await compat("--os-release", osRelease, "--extension-release", bakery);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^compatible: systemd-sysext would merge kata-containers on flatcar 4593\.2\.5 \((x86-64|arm64)\)/,
    );
  });

  it("treats a release file named for another extension as missing", async () => {
    const r = await compat("--os-release", osRelease, "--extension-release", bakery, "--name", "docker", "--json");
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).reasons).toEqual([
      "extension-release: /usr/lib/extension-release.d/extension-release.docker is missing in the image",
      'file name: extension-release.kata-containers belongs to extension "kata-containers", not "docker"',
    ]);
  });

  it.each([
    [["--extension-release", "x"], "--os-release FILE is required"],
    [["--os-release", "x"], "--extension-release FILE is required"],
    [["--os-release", "x", "--extension-release", "y", "--bogus"], "Unknown option '--bogus'"],
    [["--os-release", "x", "--extension-release", "y", "extra"], "positional"],
    [["--os-release", "x", "--extension-release", "y", "--name", "../etc"], "--name"],
    [
      ["--os-release", "x", "--extension-release", "y", "--arch", "amd64"],
      '--arch: "amd64" is not a systemd architecture',
    ],
  ])("exits 2 on usage errors: %j", async (argv, message) => {
    const r = await compat(...argv);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(message);
    expect(r.stderr).toContain("usage: kata-sysextctl compat");
  });

  it.each([
    ["missing os-release", () => [join(dir, "absent"), bakery], "cannot read os-release (ENOENT)"],
    [
      "empty extension-release",
      () => [osRelease, file("extension-release.empty", "")],
      "extension-release file is empty",
    ],
  ])("exits 2 on unreadable input: %s", async (_title, paths, message) => {
    const [os, ext] = paths();
    const r = await compat("--os-release", os ?? "", "--extension-release", ext ?? "", "--json");
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(message);
  });

  it("refuses a FIFO nobody writes to (exit 2) instead of waiting on it, and still reads a pipe as it fills", async () => {
    const fifo = join(dir, "fifo");
    await run("mkfifo", [fifo]);
    const bin = resolve(import.meta.dirname, "../../../bin/kata-sysextctl.js");
    const hung = await run(process.execPath, [bin, "compat", "--os-release", fifo, "--extension-release", bakery], {
      timeoutMs: 20_000,
    });
    expect(hung.exitCode).toBe(2);
    expect(hung.stderr).toContain(`${fifo}: os-release file is empty`);
    // A pipe whose writer is slow (as with --os-release <(…)) is waited for.
    const piped = await run("bash", [
      "-c",
      `"$0" "$1" compat --os-release <(sleep 1; cat "$2") --extension-release "$3" --json`,
      process.execPath,
      bin,
      osRelease,
      bakery,
    ]);
    expect(piped.exitCode, piped.stderr).toBe(0);
    expect(JSON.parse(piped.stdout)).toMatchObject({ compatible: true });
  });

  it("works through the installed kata-sysextctl entry point, exit status included", async () => {
    const bin = resolve(import.meta.dirname, "../../../bin/kata-sysextctl.js");
    const args = [
      bin,
      "compat",
      "--os-release",
      osRelease,
      "--extension-release",
      pinned,
      "--arch",
      "x86-64",
      "--json",
    ];
    const r = await run(process.execPath, args, { timeoutMs: 30_000 });
    expect(r.exitCode).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({
      compatible: false,
      reasons: ['SYSEXT_LEVEL: extension has "2.0", host has "1.0"'],
    });
  });
});
