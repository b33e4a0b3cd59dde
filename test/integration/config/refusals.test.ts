// The real `kata-sysextd` and `kata-sysextctl` refusing configurations they must not run on: exit 2, a message
// naming the file (and line and key) and what to do, and never a password from a URL in what they print.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { run } from "../../../src/exec.ts";
import { CTL, DAEMON, inMountNamespace, makeSandboxRoot, NODE, runArgv, writeConfig } from "../../helpers/sandbox.ts";

const roots: string[] = [];
function root(): string {
  const made = makeSandboxRoot();
  roots.push(made);
  return made;
}
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

/** `kata-sysextd --once --root R …`: every case here ends before any network or systemd-sysext. */
const once = (r: string, ...extra: string[]) =>
  runArgv([NODE, DAEMON, "--once", "--root", r, ...extra], { timeoutMs: 20_000 });

describe("kata-sysextd refuses, with exit 2", () => {
  it("an explicit --config that does not exist, instead of running on the defaults", async () => {
    const r = root();
    const ran = await once(r, "--config", join(r, "nowhere.toml"));
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain(`${join(r, "nowhere.toml")}: does not exist`);
    expect(ran.stderr).not.toContain("extensions.flatcar.org");
  });

  it.each([
    ["an empty --root (an unset shell variable), instead of taking the working directory", "", "--root is empty"],
    ["a --root that does not exist, instead of creating it", "missing", "does not exist"],
  ])("%s", async (_title, name, message) => {
    const cwd = mkdtempSync(join(tmpdir(), "kata-cwd-"));
    roots.push(cwd);
    const given = name === "" ? "" : join(cwd, name);
    for (const argv of [
      [NODE, DAEMON, "--once", "--root", given],
      [NODE, DAEMON, "boot", "--root", given],
      [NODE, CTL, "preflight", "--root", given],
    ]) {
      const [file = "", ...args] = argv;
      const ran = await run(file, args, { timeoutMs: 20_000, cwd });
      expect(ran.exitCode, ran.stderr).toBe(2);
      expect(ran.stderr).toContain(message);
    }
    // Nothing was created, neither in the working directory nor where --root pointed.
    expect(readdirSync(cwd)).toEqual([]);
  });

  it("a dangling symlink at the default path", async () => {
    const r = root();
    symlinkSync("/nonexistent/config.toml", join(r, "etc/kata-sysextd/config.toml"));
    const ran = await once(r);
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain("config.toml: is a symlink to a file that does not exist");
  });

  it("a FIFO, without waiting for a writer", async () => {
    const r = root();
    const fifo = join(r, "fifo.toml");
    execFileSync("mkfifo", [fifo]);
    const ran = await once(r, "--config", fifo);
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain(`${fifo}: is a FIFO, not a regular file`);
  });

  it("a device such as /dev/zero, without reading it", async () => {
    const ran = await once(root(), "--config", "/dev/zero");
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain("/dev/zero: is a character device, not a regular file");
  });

  it("a file larger than a configuration can be", async () => {
    const r = root();
    const big = writeConfig(r, `# ${"x".repeat(2 * 1024 * 1024)}\n`);
    const ran = await once(r);
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain(`${big}: is larger than 1048576 bytes`);
  });

  it.each([
    ["[constructor]\n", ':1: unknown section "constructor"; expected one of source, policy'],
    ["[toString]\nx = 1\n", ':1: unknown section "toString"'],
    ["[__proto__]\nurl = 1\n", ':1: unknown section "__proto__"'],
    [
      '[source]\nname = "kata-containers"\nconstructor = 1\n',
      ':3: unknown key "source.constructor"; expected one of url, name',
    ],
    ["[policy]\nhasOwnProperty = 1\n", ':2: unknown key "policy.hasOwnProperty"; expected one of versions'],
    [
      "[policy]\nconstraints = [{ valueOf = 1 }]\n",
      'unknown key "policy.constraints[0].valueOf"; expected one of kata, flatcar, reason',
    ],
    [
      '[[companion]]\nname = "ch"\nversions = ">=1"\ntoString = 1\n',
      'unknown key "companion[0].toString"; expected one of name, url',
    ],
  ])("a prototype name: %j", async (toml, message) => {
    const r = root();
    const file = writeConfig(r, toml);
    const ran = await once(r);
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain(`${file}${message.startsWith(":") ? "" : ":"}`);
    expect(ran.stderr).toContain(message);
  });

  it("a source URL with credentials, and prints no password", async () => {
    const r = root();
    const file = writeConfig(r, '[source]\nurl = "https://operator:s3cret-pw@releases.example/ext/"\n');
    const ran = await once(r);
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain(`${file}:2: key "source.url" must be an http(s) URL ending in /`);
    expect(ran.stderr).toContain("it carries a user or password");
    expect(ran.stderr).toContain("https://***@releases.example/ext/");
    expect(ran.stderr).not.toContain("s3cret-pw");
    expect(ran.stderr).not.toContain("operator:");
  });
});

describe("kata-sysextctl", () => {
  it("preflight refuses an explicit --config that does not exist", async () => {
    const r = root();
    const ran = await runArgv([NODE, CTL, "preflight", "--root", r, "--config", join(r, "nowhere.toml")]);
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain("nowhere.toml: does not exist");
  });
});

it("no file at the default path runs on the defaults and says so once", async () => {
  const r = root();
  // The boot step needs no network; it reads the configuration as every command does.
  const ran = await runArgv(inMountNamespace(r, [NODE, DAEMON, "boot", "--root", r]));
  const said = ran.stderr.split("\n").filter((l) => l.includes("no configuration at"));
  expect(said).toEqual([
    `notice: no configuration at ${join(r, "etc/kata-sysextd/config.toml")}: running on the defaults (source https://extensions.flatcar.org/extensions/)`,
  ]);
});

it("the same file written without a password is accepted", async () => {
  const r = root();
  writeFileSync(join(r, "etc/kata-sysextd/config.toml"), '[source]\nurl = "https://releases.example/ext/"\n');
  const ran = await runArgv(inMountNamespace(r, [NODE, DAEMON, "boot", "--root", r]));
  expect(ran.code, ran.stderr).not.toBe(2);
});
