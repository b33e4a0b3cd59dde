// kata-sysextctl compat over real files: exit codes, JSON shape and human output as docs/interface.md states them.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { compatCommand, imageExtensionName } from "../../../src/cli/compat.ts";
import { run } from "../../../src/exec.ts";
import { buildImage } from "../../helpers/images.ts";

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

describe("kata-sysextctl compat on an image (as published or quarantined)", () => {
  const image = (file: string, spec: Parameters<typeof buildImage>[0]): string => buildImage(spec, join(dir, file));
  const inside = "/usr/lib/extension-release.d/extension-release.kata-containers";

  it("judges a squashfs image by its own extension-release and says it read it from the image", async () => {
    const raw = image("kata-containers-3.32.0-x86-64.raw", {
      version: "3.32.0",
      extensionRelease: "ID=flatcar\nSYSEXT_LEVEL=2.0\n",
    });
    const human = await compat("--os-release", osRelease, "--extension-release", raw, "--arch", "x86-64");
    expect(human.stderr).toBe("");
    expect(human.code).toBe(1);
    expect(human.stdout).toBe(
      "not compatible: systemd-sysext would not merge kata-containers on flatcar 4593.2.5 (x86-64)\n" +
        `  extension-release: read from the image, ${raw}:${inside}\n` +
        '  SYSEXT_LEVEL: extension has "2.0", host has "1.0"\n',
    );
    const good = image("kata-containers-3.33.0-x86-64.raw", { version: "3.33.0" });
    const r = await compat("--os-release", osRelease, "--extension-release", good, "--arch", "x86-64", "--json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      compatible: true,
      reasons: ['ID: "_any" matches every host; VERSION_ID and SYSEXT_LEVEL are not checked'],
      from: `${good}:${inside}`,
    });
  });

  it("takes the extension name from the image file name, and --name over it", async () => {
    const ch = image("cloud-hypervisor-45.0-x86-64.raw", {
      name: "cloud-hypervisor",
      version: "45.0",
      extensionRelease: "ID=_any\nARCHITECTURE=arm64\n",
    });
    const r = await compat("--os-release", osRelease, "--extension-release", ch, "--arch", "x86-64", "--json");
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({
      compatible: false,
      reasons: ['ARCHITECTURE: extension is for "arm64", host is "x86-64"'],
      from: `${ch}:/usr/lib/extension-release.d/extension-release.cloud-hypervisor`,
    });
    // Asked for another name, the image has no release file for it: systemd-sysext would not merge it so.
    const other = await compat("--os-release", osRelease, "--extension-release", ch, "--name", "kata-containers");
    expect(other.code).toBe(1);
    expect(other.stdout).toContain("  extension-release: none found in the image\n");
    expect(other.stdout).toContain(`${inside} is missing in the image`);
    expect(other.stdout).toContain(
      "the image carries /usr/lib/extension-release.d/extension-release.cloud-hypervisor; if it is another extension's image, say which with --name",
    );
  });

  it("reports an image whose release file systemd-sysext would refuse as not compatible, with the image's remedy", async () => {
    const nul = image("kata-containers-3.34.0-x86-64.raw", { version: "3.34.0", extensionRelease: "ID=_a\0ny\n" });
    const r = await compat("--os-release", osRelease, "--extension-release", nul, "--json");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(1);
    const [reason, ...more] = JSON.parse(r.stdout).reasons as string[];
    expect(more).toEqual([]);
    expect(reason).toContain(`${nul}:${inside}: extension-release holds a NUL byte`);
    expect(reason).toContain("systemd-sysext would not merge the image");
    expect(reason).toContain("republish the image");
    expect(reason).not.toContain("remove the NUL byte");
  });

  it("gives an erofs image inspect's refusal, and names what kata-sysextd refuses in a squashfs one", async () => {
    const erofs = image("kata-containers-3.35.0-x86-64.raw", { version: "3.35.0", format: "erofs" });
    const r = await compat("--os-release", osRelease, "--extension-release", erofs, "--arch", "x86-64");
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^not compatible: kata-sysextd would not link kata-containers on flatcar 4593\.2\.5/);
    expect(r.stdout).toMatch(/is an erofs image, which kata-sysextd cannot check for device nodes/);
    expect(r.stdout).toContain("publish the extension as a squashfs image (mksquashfs)");

    const setuid = image("kata-containers-3.36.0-x86-64.raw", {
      version: "3.36.0",
      files: { "usr/bin/su-kata": { content: "#!/bin/sh\n", mode: 0o4755 } },
    });
    const s = await compat("--os-release", osRelease, "--extension-release", setuid, "--arch", "x86-64", "--json");
    expect(s.code).toBe(1);
    expect(JSON.parse(s.stdout).reasons).toEqual([
      'ID: "_any" matches every host; VERSION_ID and SYSEXT_LEVEL are not checked',
      "kata-sysextd refuses the image: ships setuid or setgid files (/usr/bin/su-kata); systemd-sysext 252 would merge them with their privilege",
    ]);
  });

  it.each([
    ["kata-containers-3.32.0-x86-64.raw", "kata-containers"],
    ["kata-containers-3.2.0-rc0-arm64.raw", "kata-containers"],
    ["docker-compose-2.20.0-x86-64.raw", "docker-compose"],
    ["kata-containers.raw", "kata-containers"],
    ["custom.raw", "custom"],
  ])("names the extension of %s as %s", (file, name) => {
    expect(imageExtensionName(file)).toBe(name);
  });
});
