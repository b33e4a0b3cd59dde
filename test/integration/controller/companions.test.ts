// Kata with a companion cloud-hypervisor extension, end to end through the real daemon under --root: set
// resolution against a loopback server, joint activation of both links, the clash check, explanations for an
// unsatisfiable set, and a joint rollback through the unix socket.
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImage, cloudHypervisorImage } from "../../helpers/images.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import { CTL, daemonOnce, makeSandboxRoot, NODE, runArgv, startDaemon, writeConfig } from "../../helpers/sandbox.ts";

const CH = "cloud-hypervisor";
let kataServer: ReleaseServer;
let chServer: ReleaseServer;
let kataDir: string;

beforeAll(async () => {
  kataDir = mkdtempSync(join(tmpdir(), "kata-pub-set-"));
  const chDir = mkdtempSync(join(tmpdir(), "ch-pub-set-"));
  const kata = (version: string, extra: Record<string, string> = {}) => ({
    version,
    content: buildImage({ version, files: extra }, join(kataDir, "build", `${version}.raw`)),
  });
  await publishRelease(kataDir, {
    images: [
      kata("3.32.0"),
      kata("3.33.0"),
      // 3.34.0 also ships a cloud-hypervisor binary at the path the companion owns: a clash.
      kata("3.34.0", { "usr/bin/cloud-hypervisor": "#!/bin/sh\necho kata-bundled\n" }),
    ],
  });
  const ch = (version: string) => ({
    version,
    content: cloudHypervisorImage(version, join(chDir, "build", `${version}.raw`)),
  });
  await publishRelease(chDir, { name: CH, images: [ch("v51.0"), ch("v52.0"), ch("v53.0")] });
  kataServer = await startReleaseServer(kataDir);
  chServer = await startReleaseServer(chDir);
});

afterAll(async () => {
  await kataServer?.close();
  await chServer?.close();
});

function config(policy: string): string {
  return `[source]
url = "${kataServer.url}"
[policy]
versions = ">=3.30.0 <3.34.0"
${policy}
[[companion]]
name = "${CH}"
url = "${chServer.url}"
versions = ">=51.0"
[containerd]
enabled = false
`;
}

const link = (root: string, name: string) => readlinkSync(join(root, `etc/extensions/${name}.raw`));

describe("Kata with a cloud-hypervisor companion", () => {
  it("activates the newest Kata with the newest companion its requirement allows, both links together", async () => {
    const root = makeSandboxRoot();
    writeConfig(
      root,
      config(
        'requires = [{ kata = "3.33.x", companion = "cloud-hypervisor", versions = ">=51.0 <53", reason = "CH 53 untested with 3.33" }]',
      ),
    );
    const ran = await daemonOnce(root);
    expect(ran.stderr).toContain("activated kata-containers-3.33.0-x86-64.raw");
    expect(ran.code).toBe(0);
    expect(link(root, "kata-containers")).toContain("kata-containers-3.33.0-x86-64.raw");
    // v53.0 is newer but excluded by the requirement; the original "v" spelling is kept in the file name.
    expect(link(root, CH)).toContain("cloud-hypervisor-v52.0-x86-64.raw");
    const record = JSON.parse(
      readFileSync(join(root, "var/lib/kata-sysextd/images/cloud-hypervisor-v52.0-x86-64.raw.json"), "utf8"),
    );
    expect(record).toMatchObject({ name: CH, version: "v52.0" });
    expect(record.files).toContain("usr/bin/cloud-hypervisor");
  });

  it("takes the publisher's requirements from metadata.json; one on an unconfigured companion is skipped", async () => {
    const metadata = join(kataDir, "kata-containers/metadata.json");
    writeFileSync(
      metadata,
      JSON.stringify({
        schemaVersion: 1,
        requires: [
          { kata: "3.33.x", companion: CH, versions: "<52", reason: "CH 52 breaks 3.33 snapshots" },
          { kata: "3.33.x", companion: "qemu", versions: ">=9", reason: "for hosts that run a qemu extension" },
        ],
      }),
    );
    try {
      const root = makeSandboxRoot();
      writeConfig(root, config(""));
      const ran = await daemonOnce(root);
      expect(ran.code).toBe(0);
      expect(link(root, "kata-containers")).toContain("kata-containers-3.33.0-x86-64.raw");
      expect(link(root, CH)).toContain("cloud-hypervisor-v51.0-x86-64.raw");
      expect(ran.stderr).toContain("requirement of Kata 3.33.x on qemu skipped: not a configured companion");
    } finally {
      rmSync(metadata, { force: true });
    }
  });

  it("explains an unsatisfiable set in terms of the requirement, and activates nothing", async () => {
    const root = makeSandboxRoot();
    writeConfig(
      root,
      config(
        'requires = [{ kata = ">=3.0.0", companion = "cloud-hypervisor", versions = ">=60", reason = "needs CH 60" }]',
      ),
    );
    const ran = await daemonOnce(root);
    expect(ran.code).toBe(1);
    expect(ran.stderr).toContain("no kata-containers release has a compatible set of companions");
    expect(ran.stderr).toContain('">=60"');
    expect(ran.stderr).toContain("needs CH 60");
    expect(ran.stderr).toContain("available: v53.0, v52.0, v51.0");
    expect(existsSync(join(root, "etc/extensions/kata-containers.raw"))).toBe(false);
    expect(existsSync(join(root, `etc/extensions/${CH}.raw`))).toBe(false);
  });

  it("refuses a set whose members ship the same file, before any link moves", async () => {
    const root = makeSandboxRoot();
    writeConfig(
      root,
      config('requires = [{ kata = "3.33.x", companion = "cloud-hypervisor", versions = "<52", reason = "pin" }]'),
    );
    expect((await daemonOnce(root)).code).toBe(0);
    expect(link(root, "kata-containers")).toContain("3.33.0");
    // Now allow 3.34.0, which ships /usr/bin/cloud-hypervisor too.
    writeConfig(root, config("").replace('versions = ">=3.30.0 <3.34.0"', 'versions = ">=3.30.0"'));
    const ran = await daemonOnce(root);
    expect(ran.code).toBe(1);
    expect(ran.stderr).toContain("extensions ship the same files");
    expect(ran.stderr).toContain("/usr/bin/cloud-hypervisor");
    expect(ran.stderr).not.toContain("rolled back"); // nothing had moved
    expect(link(root, "kata-containers")).toContain("3.33.0");
    expect(link(root, CH)).toContain("v51.0");
    // Held, so the next pass settles on the newest set that does not clash instead of failing on this one.
    const held = JSON.parse(readFileSync(join(root, "var/lib/kata-sysextd/state.json"), "utf8")).held;
    expect(held["kata-containers"]).toEqual(["kata-containers-3.34.0-x86-64.raw"]);
    const next = await daemonOnce(root);
    expect(next.code, next.stderr).toBe(0);
    expect(link(root, "kata-containers")).toContain("3.33.0");
  });

  it("rolls every member back together through the daemon's socket", async () => {
    const root = makeSandboxRoot();
    writeConfig(
      root,
      config('requires = [{ kata = "3.33.x", companion = "cloud-hypervisor", versions = "<52", reason = "pin" }]'),
    );
    writeConfig(root, config("").replace('versions = ">=3.30.0 <3.34.0"', 'versions = "<3.33.0"'));
    expect((await daemonOnce(root)).code).toBe(0);
    expect(link(root, "kata-containers")).toContain("3.32.0");
    expect(link(root, CH)).toContain("v53.0");
    writeConfig(
      root,
      config('requires = [{ kata = "3.33.x", companion = "cloud-hypervisor", versions = "<52", reason = "pin" }]'),
    );
    expect((await daemonOnce(root)).code).toBe(0);
    expect(link(root, "kata-containers")).toContain("3.33.0");
    expect(link(root, CH)).toContain("v51.0");

    // The daemon runs in its own mount namespace; its socket is under the root, so the CLI reaches it from here.
    const port = 18_000 + (process.pid % 1000);
    const pinned = config(
      'requires = [{ kata = "3.33.x", companion = "cloud-hypervisor", versions = "<52", reason = "pin" }]',
    );
    writeConfig(root, `${pinned}\n[api]\nlisten = "127.0.0.1:${port}"\n`);
    const daemon = startDaemon(root);
    try {
      const socket = join(root, "run/kata-sysextd/api.sock");
      for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 100));
      const rolled = await runArgv([NODE, CTL, "rollback", "--root", root, "--json"]);
      expect(rolled.code).toBe(0);
      expect(link(root, "kata-containers")).toContain("3.32.0");
      expect(link(root, CH)).toContain("v53.0");
      const status = JSON.parse((await runArgv([NODE, CTL, "status", "--root", root, "--json"])).stdout);
      expect(status.members).toEqual([
        expect.objectContaining({ name: "kata-containers", active: "3.32.0", previous: "3.33.0" }),
        expect.objectContaining({ name: CH, active: "v53.0", previous: "v51.0" }),
      ]);

      // The rollback sticks: a refresh does not simply take the images rolled back from again…
      expect((await runArgv([NODE, CTL, "refresh", "--root", root, "--json"])).code).toBe(0);
      expect(link(root, "kata-containers")).toContain("3.32.0");
      expect(link(root, CH)).toContain("v53.0");
      // …until the operator says so…
      const lifted = await runArgv([NODE, CTL, "refresh", "--release-holds", "--root", root, "--json"]);
      expect(lifted.code).toBe(0);
      expect(link(root, "kata-containers")).toContain("3.33.0");
      expect(link(root, CH)).toContain("v51.0");
      expect(JSON.parse(readFileSync(join(root, "var/lib/kata-sysextd/state.json"), "utf8")).held).toEqual({});
      // …or changes what decides versions (the watcher reloads it and runs a pass; a log level would not do).
      expect((await runArgv([NODE, CTL, "rollback", "--root", root, "--json"])).code).toBe(0);
      expect(link(root, "kata-containers")).toContain("3.32.0");
      expect((await runArgv([NODE, CTL, "refresh", "--root", root, "--json"])).code).toBe(0);
      expect(link(root, "kata-containers")).toContain("3.32.0");
      const repinned = config(
        'requires = [{ kata = "3.33.x", companion = "cloud-hypervisor", versions = "<52", reason = "pin" }]\nkeep = 2',
      );
      writeConfig(root, `${repinned}\n[api]\nlisten = "127.0.0.1:${port}"\n`);
      for (let i = 0; i < 100 && !link(root, "kata-containers").includes("3.33.0"); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(link(root, "kata-containers")).toContain("3.33.0");
      expect(link(root, CH)).toContain("v51.0");

      // A companion's link removed behind the daemon's back is noticed (not only Kata's) and put back.
      rmSync(join(root, `etc/extensions/${CH}.raw`));
      for (let i = 0; i < 100 && !existsSync(join(root, `etc/extensions/${CH}.raw`)); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(link(root, CH)).toContain("v51.0");
    } finally {
      await daemon.stop();
    }
  }, 60_000);
});
