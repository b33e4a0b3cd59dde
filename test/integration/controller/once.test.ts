// kata-sysextd --once against a real release server on 127.0.0.1, real squashfs images and the real
// systemd-sysext under --root in a private mount namespace; killed with SIGKILL at many points.
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { handlerCapableHost } from "../../fixtures/preflight/hosts.ts";
import { scratch } from "../../fixtures/preflight/toolchain.ts";
import { buildImage, flatcarRelease, writeOsRelease } from "../../helpers/images.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import {
  DAEMON,
  daemonOnce,
  inMountNamespace,
  makeSandboxRoot,
  NODE,
  recordInterruptedSwitch,
  runArgv,
  until,
  writeConfig,
} from "../../helpers/sandbox.ts";

const LINK = "etc/extensions/kata-containers.raw";
const STORE = "var/lib/kata-sysextd/images";

let pub: string;
let server: ReleaseServer;

beforeAll(async () => {
  pub = mkdtempSync(join(tmpdir(), "kata-pub-"));
  const images = ["3.30.0", "3.32.0"].map((version) => ({
    version,
    content: buildImage({ version }, join(pub, "build", `${version}.raw`)),
  }));
  await publishRelease(pub, { images });
  server = await startReleaseServer(pub);
});
afterAll(async () => {
  await server?.close();
  rmSync(scratch(), { recursive: true, force: true });
});

/** Whether some process holds a flock on `file` (a non-blocking try fails). */
function flockIsHeld(file: string): boolean {
  return spawnSync("flock", ["--nonblock", "--conflict-exit-code", "75", file, "true"]).status === 75;
}

function sandbox(extra = ""): string {
  const root = makeSandboxRoot();
  writeConfig(root, `[source]\nurl = "${server.url}"\n${extra}`);
  return root;
}

/** The invariant that must hold whatever moment the daemon died: the link is absent or points at a complete, verified image. */
function assertLinkSafe(root: string): string | null {
  const link = join(root, LINK);
  if (!existsSync(link) && !isSymlink(link)) return null;
  expect(lstatSync(link).isSymbolicLink()).toBe(true);
  const target = resolve(dirname(link), readlinkSync(link));
  expect(dirname(target)).toBe(join(root, STORE));
  const record = JSON.parse(readFileSync(`${target}.json`, "utf8")) as { sha256: string };
  expect(createHash("sha256").update(readFileSync(target)).digest("hex")).toBe(record.sha256);
  return target;
}

const isSymlink = (p: string) => {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
};

describe("kata-sysextd --once --root", () => {
  it("fetches the newest acceptable version, verifies it, links it, and is idempotent", async () => {
    const root = sandbox();
    const first = await daemonOnce(root);
    expect(first.stderr).toContain("activated kata-containers-3.32.0-x86-64.raw");
    expect(first.code).toBe(0);
    expect(readlinkSync(join(root, LINK))).toBe("../../var/lib/kata-sysextd/images/kata-containers-3.32.0-x86-64.raw");
    assertLinkSafe(root);
    const record = JSON.parse(readFileSync(join(root, STORE, "kata-containers-3.32.0-x86-64.raw.json"), "utf8"));
    expect(record).toMatchObject({ version: "3.32.0", trust: "checksum", arch: "x86-64" });
    expect(record.extensionRelease).toContain("ID=_any");

    const imageGets = () => server.requests.filter((r) => r.path.endsWith("3.32.0-x86-64.raw")).length;
    const before = imageGets();
    const second = await daemonOnce(root);
    expect(second.code).toBe(0);
    expect(second.stderr).not.toContain("activated");
    expect(imageGets()).toBe(before);
  });

  it("honours policy.versions and records the previous image on upgrade", async () => {
    const root = sandbox('[policy]\nversions = "<3.31"\n');
    expect((await daemonOnce(root)).code).toBe(0);
    expect(readlinkSync(join(root, LINK))).toContain("3.30.0");
    writeConfig(root, `[source]\nurl = "${server.url}"\n`);
    expect((await daemonOnce(root)).code).toBe(0);
    expect(readlinkSync(join(root, LINK))).toContain("3.32.0");
    const state = JSON.parse(readFileSync(join(root, "var/lib/kata-sysextd/state.json"), "utf8"));
    expect(state.previous).toEqual({ "kata-containers": "kata-containers-3.30.0-x86-64.raw" });
    expect(state.lastReconcile.result).toBe("ok");
  });

  it("fails with exit 1 and a reason when no version satisfies the policy", async () => {
    const root = sandbox('[policy]\nversions = ">=9"\n');
    const ran = await daemonOnce(root);
    expect(ran.code).toBe(1);
    expect(ran.stderr).toMatch(/no acceptable Kata version: .*3\.32\.0.*policy/);
    expect(isSymlink(join(root, LINK))).toBe(false);
  });

  it("reads a SHA256SUMS with CRLF line ends, as sha256sum -c does", async () => {
    // The same catalogue, images included, with CRLF line ends under its own url.
    mkdirSync(join(pub, "crlf/kata-containers"), { recursive: true });
    for (const file of readdirSync(join(pub, "kata-containers"))) {
      copyFileSync(join(pub, "kata-containers", file), join(pub, "crlf/kata-containers", file));
    }
    const sums = readFileSync(join(pub, "kata-containers/SHA256SUMS"), "utf8").trimEnd().split("\n");
    writeFileSync(join(pub, "crlf/kata-containers/SHA256SUMS"), sums.map((l) => `${l}\r\n`).join(""));
    const root = makeSandboxRoot();
    writeConfig(root, `[source]\nurl = "${server.url}crlf/"\n`);
    const ran = await daemonOnce(root);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stderr).not.toContain("ignored");
    expect(readlinkSync(join(root, LINK))).toBe("../../var/lib/kata-sysextd/images/kata-containers-3.32.0-x86-64.raw");
  });

  it("fails a SHA256SUMS without one valid line (an HTML page at a wrong url) as manifest-invalid, in a few log lines", async () => {
    // What a web server answers for a directory it has no index for, 200 OK; its images are never fetched.
    const page = `<!DOCTYPE html>\n<html>\n<head><title>Mirror</title></head>\n<body>\n${"<p>a row</p>\n".repeat(2998)}</body>\n</html>\n`;
    mkdirSync(join(pub, "html/kata-containers"), { recursive: true });
    writeFileSync(join(pub, "html/kata-containers/SHA256SUMS"), page);
    const root = makeSandboxRoot();
    writeConfig(root, `[source]\nurl = "${server.url}html/"\n`);
    const ran = await daemonOnce(root);
    expect(ran.code).toBe(1);
    const lines = ran.stderr.split("\n").filter((l) => l.includes("SHA256SUMS"));
    // Three lines one by one, one line with the count, and the failure itself (logged, and its pass's summary).
    const warnings = lines.filter((l) => l.startsWith("warning:"));
    expect(warnings.filter((l) => l.includes("ignored:"))).toHaveLength(3);
    expect(warnings.filter((l) => l.includes("3004 lines rejected, first line 1:"))).toHaveLength(1);
    expect(warnings).toHaveLength(4);
    expect(lines.length).toBeLessThanOrEqual(6);
    expect(ran.stderr).toContain("ERROR_CODE=manifest-invalid");
    expect(ran.stderr).not.toContain("ERROR_CODE=no-compatible-version");
    expect(ran.stderr).toContain(
      `REMEDY=check [source] url: what it serves is an HTML page (it begins "<!DOCTYPE html> <html> <head><title>Mirror</title></head>`,
    );
    expect(ran.stderr).toContain("if the url is right, the publisher must fix its SHA256SUMS");
    const state = JSON.parse(readFileSync(join(root, "var/lib/kata-sysextd/state.json"), "utf8"));
    expect(state.lastReconcile.error).toContain(`${server.url}html/kata-containers/SHA256SUMS is not a SHA256SUMS`);
    expect(isSymlink(join(root, LINK))).toBe(false);
  });

  it("leaves the store and state.json alone when another pass holds the lock", async () => {
    const root = sandbox();
    expect((await daemonOnce(root)).code).toBe(0);
    const stateFile = join(root, "var/lib/kata-sysextd/state.json");
    const stateBefore = readFileSync(stateFile, "utf8");
    // Another pass (pid 1 is alive) holds the lock while its download is under way.
    const incoming = join(root, STORE, ".incoming");
    mkdirSync(incoming, { recursive: true });
    const partial = join(incoming, ".kata-containers-3.33.0-x86-64.raw.partial");
    writeFileSync(partial, randomBytes(4096));
    // The lock is the kernel's (flock); util-linux flock holds it here for a process that says it is pid 4242.
    const lockFile = join(root, STORE, ".lock");
    writeFileSync(lockFile, "4242\n");
    // --close: sleep does not inherit the descriptor, so killing flock itself drops the lock.
    const holder = spawn("flock", ["--exclusive", "--close", lockFile, "sleep", "60"], {
      stdio: "ignore",
      detached: true,
    });
    try {
      await until("the holder to take the lock", () => flockIsHeld(lockFile));
      const ran = await daemonOnce(root);
      expect(ran.code).toBe(1);
      expect(ran.stderr).toContain("another kata-sysextd pass is running (pid 4242)");
      expect(existsSync(partial)).toBe(true);
      expect(readFileSync(stateFile, "utf8")).toBe(stateBefore);
      expect(readFileSync(lockFile, "utf8")).toBe("4242\n");
    } finally {
      const exited = once(holder, "exit");
      process.kill(-(holder.pid ?? 0), "SIGKILL"); // flock and its sleep
      await exited;
    }
    // The holder is gone (killed, so nothing unlocked it by hand): the kernel dropped its lock.
    const after = await daemonOnce(root);
    expect(after.code, after.stderr).toBe(0);
  });

  it("removes the temporary link a pass killed inside a link switch left, and nothing else", async () => {
    const root = sandbox();
    expect((await daemonOnce(root)).code).toBe(0);
    const dir = join(root, "etc/extensions");
    // As a kill between symlink() and rename() leaves it; an operator's own file stays.
    symlinkSync(
      "../../var/lib/kata-sysextd/images/kata-containers-3.30.0-x86-64.raw",
      join(dir, ".kata-containers.raw.4242.new"),
    );
    writeFileSync(join(dir, ".kata-containers.raw.bak"), "mine\n");
    const ran = await daemonOnce(root);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stderr).toContain("removed .kata-containers.raw.4242.new, left by a link switch cut short");
    expect(readdirSync(dir).sort()).toEqual([".kata-containers.raw.bak", "kata-containers.raw"]);
  });

  it("a lock file left by a dead pass, or naming a live process, blocks nothing: only a held flock counts", async () => {
    const root = sandbox();
    mkdirSync(join(root, STORE), { recursive: true });
    for (const content of ["1\n", "", `${process.pid}\n`]) {
      writeFileSync(join(root, STORE, ".lock"), content);
      const ran = await daemonOnce(root);
      expect(ran.code, `lock file ${JSON.stringify(content)}: ${ran.stderr}`).toBe(0);
    }
  });

  it("quarantines an image whose extension-release does not match the host, and links nothing", async () => {
    const bad = mkdtempSync(join(tmpdir(), "kata-pub-bad-"));
    const content = buildImage(
      { version: "3.40.0", extensionRelease: "ID=ubuntu\nVERSION_ID=22.04\n" },
      join(bad, "build", "b.raw"),
    );
    await publishRelease(bad, { images: [{ version: "3.40.0", content }] });
    const badServer = await startReleaseServer(bad);
    try {
      const root = makeSandboxRoot();
      writeConfig(root, `[source]\nurl = "${badServer.url}"\n`);
      const ran = await daemonOnce(root);
      expect(ran.code).toBe(1);
      expect(ran.stderr).toContain("failed inspection");
      expect(ran.stderr).toMatch(/ID/);
      expect(isSymlink(join(root, LINK))).toBe(false);
      expect(readdirSync(join(root, STORE)).filter((f) => !f.startsWith("."))).toEqual([]);
      expect(existsSync(join(root, "var/lib/kata-sysextd/quarantine/kata-containers-3.40.0-x86-64.raw"))).toBe(true);
      // The next pass does not fetch the quarantined image again.
      const again = await daemonOnce(root);
      expect(again.code).toBe(1);
      expect(badServer.requests.filter((r) => r.path.endsWith(".raw")).length).toBe(1);
    } finally {
      await badServer.close();
    }
  });

  it("takes a file republished under a quarantined name with other bytes, and forgets the quarantine", async () => {
    const pubDir = mkdtempSync(join(tmpdir(), "kata-pub-fixed-"));
    const file = "kata-containers-3.40.0-x86-64.raw";
    const bad = buildImage(
      { version: "3.40.0", extensionRelease: "ID=ubuntu\nVERSION_ID=22.04\n" },
      join(pubDir, "b1"),
    );
    await publishRelease(pubDir, { images: [{ version: "3.40.0", content: bad }] });
    const pubServer = await startReleaseServer(pubDir);
    try {
      const root = makeSandboxRoot();
      writeConfig(root, `[source]\nurl = "${pubServer.url}"\n`);
      expect((await daemonOnce(root)).code).toBe(1);
      const quarantined = join(root, "var/lib/kata-sysextd/quarantine", file);
      expect(readFileSync(`${quarantined}.reason`, "utf8")).toContain(
        createHash("sha256").update(readFileSync(bad)).digest("hex"),
      );

      // The publisher fixes the release in place: same file name, new bytes, new SHA256SUMS line.
      const fixed = buildImage({ version: "3.40.0" }, join(pubDir, "b2"));
      await publishRelease(pubDir, { images: [{ version: "3.40.0", content: fixed }] });
      const ran = await daemonOnce(root);
      expect(ran.code, ran.stderr).toBe(0);
      expect(readlinkSync(join(root, LINK))).toContain(file);
      expect(existsSync(quarantined)).toBe(false);
      expect(existsSync(`${quarantined}.reason`)).toBe(false);
      expect(pubServer.requests.filter((r) => r.path.endsWith(".raw")).length).toBe(2);
    } finally {
      await pubServer.close();
    }
  });

  it("quarantines a published file that cannot be opened as an image, and does not fetch it again", async () => {
    const real = readFileSync(buildImage({ version: "3.41.0" }, join(mkdtempSync(join(tmpdir(), "kata-b-")), "b.raw")));
    const cases = [
      { what: "not an image at all", content: randomBytes(8192), says: "neither a squashfs nor an erofs image" },
      {
        what: "a squashfs cut short",
        content: real.subarray(0, 200), // the superblock, without the tables it points at
        says: "cannot be read as an image",
      },
    ];
    for (const { what, content, says } of cases) {
      const bad = mkdtempSync(join(tmpdir(), "kata-pub-bad-"));
      await publishRelease(bad, { images: [{ version: "3.41.0", content }] });
      const badServer = await startReleaseServer(bad);
      try {
        const root = makeSandboxRoot();
        writeConfig(root, `[source]\nurl = "${badServer.url}"\n`);
        const ran = await daemonOnce(root);
        expect(ran.code, what).toBe(1);
        expect(ran.stderr, what).toContain(says);
        const quarantined = join(root, "var/lib/kata-sysextd/quarantine/kata-containers-3.41.0-x86-64.raw");
        expect(existsSync(quarantined), what).toBe(true);
        expect(readFileSync(`${quarantined}.reason`, "utf8"), what).toContain(says);
        expect(
          readdirSync(join(root, STORE)).filter((f) => !f.startsWith(".")),
          what,
        ).toEqual([]);
        expect(readdirSync(join(root, STORE, ".incoming")), what).toEqual([]);
        expect((await daemonOnce(root)).code, what).toBe(1);
        expect(badServer.requests.filter((r) => r.path.endsWith(".raw")).length, what).toBe(1);
      } finally {
        await badServer.close();
      }
    }
  });

  it("ends a pass with containerd's runtimes matching the active image, after an interrupted switch", async () => {
    const pubDir = mkdtempSync(join(tmpdir(), "kata-pub-handlers-"));
    const qemu = { "opt/kata/share/defaults/kata-containers/configuration-qemu.toml": "[hypervisor.qemu]\n" };
    await publishRelease(pubDir, {
      images: [
        { version: "3.30.0", content: buildImage({ version: "3.30.0" }, join(pubDir, "b1")) },
        { version: "3.32.0", content: buildImage({ version: "3.32.0", files: qemu }, join(pubDir, "b2")) },
      ],
    });
    const pubServer = await startReleaseServer(pubDir);
    try {
      const root = handlerCapableHost(makeSandboxRoot());
      mkdirSync(join(root, "usr/share/containerd"), { recursive: true });
      writeFileSync(join(root, "usr/share/containerd/config.toml"), "version = 2\n");
      const registered = () => readFileSync(join(root, "etc/kata-sysextd/containerd.toml"), "utf8");
      const pinned = `[source]\nurl = "${pubServer.url}"\n[policy]\nversions = "<3.31"\n`;
      writeConfig(root, pinned);
      expect((await daemonOnce(root)).code).toBe(0);
      expect(registered()).not.toContain("kata-qemu");
      writeConfig(root, `[source]\nurl = "${pubServer.url}"\n`);
      expect((await daemonOnce(root)).code).toBe(0);
      expect(registered()).toContain("kata-qemu");

      // Killed inside the switch after containerd was registered for 3.32.0, and pinned back meanwhile: the pass
      // puts the 3.30.0 link back and wants nothing else, so only the pass's last step can fix containerd.
      const from = "kata-containers-3.30.0-x86-64.raw";
      recordInterruptedSwitch(root, from, "kata-containers-3.32.0-x86-64.raw");
      writeConfig(root, pinned);
      const ran = await daemonOnce(root);
      expect(ran.code, ran.stderr).toBe(0);
      expect(readlinkSync(join(root, LINK))).toContain("3.30.0");
      expect(ran.stderr).toContain(
        `containerd's Kata runtime registration did not match ${from}, the base configuration or the presence of /etc/kata-containers/configuration.toml; rewrote it`,
      );
      expect(registered()).not.toContain("kata-qemu");
      expect(registered()).toContain("kata-clh");
      // Level-triggered, not a loop: the next pass finds nothing to rewrite.
      expect((await daemonOnce(root)).stderr).not.toContain("registration did not match");
      // A changed base configuration (a Flatcar update ships a new one) is merged in by the next pass too.
      writeFileSync(join(root, "usr/share/containerd/config.toml"), 'version = 2\nroot = "/var/lib/containerd-x"\n');
      const edited = await daemonOnce(root);
      expect(edited.stderr).toContain("registration did not match");
      expect(registered()).toContain("/var/lib/containerd-x");
      expect(registered()).toContain("kata-clh");
    } finally {
      await pubServer.close();
    }
  });

  it("stores an image made for the next Flatcar release without linking it, and boots into it offline", async () => {
    const pubDir = mkdtempSync(join(tmpdir(), "kata-pub-next-"));
    // As Flatcar's own extensions are: each image made for one release (VERSION_ID, no SYSEXT_LEVEL).
    const forNext = flatcarRelease("4650.0.0");
    await publishRelease(pubDir, {
      images: [
        {
          version: "3.32.0",
          content: buildImage({ version: "3.32.0", extensionRelease: flatcarRelease("4593.2.5") }, join(pubDir, "b1")),
        },
        {
          version: "3.33.0",
          content: buildImage({ version: "3.33.0", extensionRelease: forNext }, join(pubDir, "b2")),
        },
        {
          version: "3.34.0",
          content: buildImage({ version: "3.34.0", extensionRelease: flatcarRelease("4700.0.0") }, join(pubDir, "b3")),
        },
      ],
    });
    const pubServer = await startReleaseServer(pubDir);
    const fetchesOf = (version: string) =>
      pubServer.requests.filter((r) => r.path.endsWith(`-${version}-x86-64.raw`)).length;
    try {
      const root = makeSandboxRoot("4593.2.5");
      // Images for coming releases count against keep like any other: with keep = 2 both stay (with keep = 1 the
      // older would be pruned, and not fetched again: other-release-prune.test.ts), and no update is staged here.
      writeConfig(root, `[source]\nurl = "${pubServer.url}"\n[policy]\nkeep = 2\n`);
      // One pass: 3.34.0 and 3.33.0 are fetched, found to be for 4700.0.0 and 4650.0.0 and kept; the pass decides
      // again after each and links 3.32.0.
      const first = await daemonOnce(root);
      expect(first.code, first.stderr).toBe(0);
      expect(readlinkSync(join(root, LINK))).toContain("3.32.0");
      expect(first.stderr).toContain("made for another flatcar release than 4593.2.5");
      expect(existsSync(join(root, STORE, "kata-containers-3.33.0-x86-64.raw"))).toBe(true);
      expect(existsSync(join(root, "var/lib/kata-sysextd/quarantine/kata-containers-3.33.0-x86-64.raw"))).toBe(false);
      // Later passes on this release neither fetch it again nor fail over it.
      const again = await daemonOnce(root);
      expect(again.code, again.stderr).toBe(0);
      expect(fetchesOf("3.33.0")).toBe(1);

      // The update to 4650.0.0 and the reboot: 3.32.0 no longer merges, and the boot step links the stored
      // 3.33.0 without the network.
      writeOsRelease(root, "4650.0.0");
      const booted = await runArgv(inMountNamespace(root, [NODE, DAEMON, "boot", "--root", root]));
      expect(booted.code, booted.stderr).toBe(0);
      expect(readlinkSync(join(root, LINK))).toContain("3.33.0");
      // With the network back, the pass agrees and fetches nothing.
      const after = await daemonOnce(root);
      expect(after.code, after.stderr).toBe(0);
      expect(readlinkSync(join(root, LINK))).toContain("3.33.0");
      expect(fetchesOf("3.33.0")).toBe(1);
      expect(fetchesOf("3.34.0")).toBe(1);
      expect(fetchesOf("3.32.0")).toBe(1);

      // An update to a release nothing stored fits: the boot step unlinks 3.33.0 (done, exit 0) and says that
      // Kata cannot run until the daemon has fetched an image, rather than "ok".
      writeOsRelease(root, "4800.0.0");
      const bare = await runArgv(inMountNamespace(root, [NODE, DAEMON, "boot", "--root", root]));
      expect(bare.code, bare.stderr).toBe(0);
      expect(existsSync(join(root, LINK))).toBe(false);
      expect(bare.stderr).toContain("boot: ok, but no Kata image is active: none stored fits this release");
    } finally {
      await pubServer.close();
    }
  });

  it("finds a switch the daemon died inside, puts the old link back and switches again with every stage", async () => {
    const root = sandbox('[policy]\nversions = "<3.31"\n');
    expect((await daemonOnce(root)).code).toBe(0);
    writeConfig(root, `[source]\nurl = "${server.url}"\n`);
    expect((await daemonOnce(root)).code).toBe(0);
    expect(readlinkSync(join(root, LINK))).toContain("3.32.0");
    // As a kill -9 right after the link moved leaves it: the switch recorded, `previous` not yet.
    const stateFile = join(root, "var/lib/kata-sysextd/state.json");
    const from = "kata-containers-3.30.0-x86-64.raw";
    const to = "kata-containers-3.32.0-x86-64.raw";
    recordInterruptedSwitch(root, from, to);
    const ran = await daemonOnce(root);
    expect(ran.code).toBe(0);
    expect(ran.stderr).toContain(`a switch was interrupted (the daemon stopped inside it): ${to} back to ${from}`);
    expect(ran.stderr).toContain(`activated ${to}`);
    expect(readlinkSync(join(root, LINK))).toContain("3.32.0");
    const after = JSON.parse(readFileSync(stateFile, "utf8"));
    expect(after.previous).toEqual({ "kata-containers": from });
    expect(after.switching).toBeNull();
  });

  it("exits 2 naming the key for an unknown configuration key", async () => {
    const root = sandbox('[policy]\nversion = ">=3"\n');
    const ran = await runArgv([NODE, DAEMON, "--once", "--root", root]);
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain('unknown key "policy.version"');
    expect(ran.stderr).toContain(join(root, "etc/kata-sysextd/config.toml"));
  });
});

describe("kill -9 at any point", () => {
  it("always leaves the link absent or on a complete verified image, and the next pass converges", async () => {
    // A bigger image so the kill lands during download as well as around the switch.
    const dir = mkdtempSync(join(tmpdir(), "kata-pub-big-"));
    // Incompressible, so the squashfs stays big and the download takes a while.
    const big = randomBytes(48 * 1024 * 1024);
    const tree = { "usr/share/kata-containers/filler": { content: big, mode: 0o644 } };
    const images = ["3.30.0", "3.33.0"].map((version) => ({
      version,
      content: buildImage({ version, files: tree }, join(dir, "build", `${version}.raw`)),
    }));
    await publishRelease(dir, { images });
    const bigServer = await startReleaseServer(dir);
    try {
      const root = makeSandboxRoot();
      writeConfig(root, `[source]\nurl = "${bigServer.url}"\n[policy]\nversions = "<3.31"\n`);
      expect((await daemonOnce(root)).code).toBe(0);
      writeConfig(root, `[source]\nurl = "${bigServer.url}"\n`);
      const seen = new Set<string | null>();
      for (const delayMs of [80, 160, 240, 320, 400, 480, 560, 640, 800, 1000]) {
        await killAfter(root, delayMs);
        const target = assertLinkSafe(root);
        seen.add(target === null ? null : (target.split("/").pop() ?? null));
      }
      const final = await daemonOnce(root);
      expect(final.code).toBe(0);
      expect(readlinkSync(join(root, LINK))).toContain("3.33.0");
      assertLinkSafe(root);
      // .lock stays by design (a flock on it is the lock; the file itself means nothing).
      const leftovers = readdirSync(join(root, STORE)).filter(
        (f) => f.startsWith(".") && f !== ".incoming" && f !== ".lock",
      );
      expect(leftovers).toEqual([]);
      expect(readdirSync(join(root, STORE, ".incoming")).filter((f) => !f.endsWith(".partial"))).toEqual([]);
      expect(seen.size).toBeGreaterThan(0);
    } finally {
      await bigServer.close();
    }
  }, 120_000);
});

function killAfter(root: string, delayMs: number): Promise<void> {
  const [file, ...args] = inMountNamespace(root, [NODE, DAEMON, "--once", "--root", root]);
  if (file === undefined) throw new Error("no argv");
  const child = spawn(file, args, { stdio: "ignore", env: { ...process.env, KATA_SYSEXTD_LOG: "stderr" } });
  return new Promise((done) => {
    const timer = setTimeout(() => {
      // unshare execs sh, which execs node: the pid is the daemon's own.
      child.kill("SIGKILL");
    }, delayMs);
    child.on("exit", () => {
      clearTimeout(timer);
      done();
    });
  });
}

describe("kata-sysextd boot (no network)", () => {
  it("keeps a partial download for the next pass with the network to resume", async () => {
    const root = sandbox();
    expect((await daemonOnce(root)).code).toBe(0);
    const partial = join(root, STORE, ".incoming", ".kata-containers-3.33.0-x86-64.raw.partial");
    writeFileSync(partial, randomBytes(4096));
    const booted = await runArgv(inMountNamespace(root, [NODE, DAEMON, "boot", "--root", root]));
    expect(booted.code, booted.stderr).toBe(0);
    expect(existsSync(partial)).toBe(true);
    // A pass that asked the source and does not want that file drops it.
    expect((await daemonOnce(root)).code).toBe(0);
    expect(existsSync(partial)).toBe(false);
  });

  it("keeps honouring the publisher's metadata.json it fetched last, after a reboot onto an older release", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kata-pub-meta-"));
    const images = ["3.30.0", "3.32.0"].map((version) => ({
      version,
      content: buildImage({ version }, join(dir, "build", `${version}.raw`)),
    }));
    await publishRelease(dir, { images });
    writeFileSync(
      join(dir, "kata-containers/metadata.json"),
      JSON.stringify({
        schemaVersion: 1,
        constraints: [{ kata: ">=3.32.0", flatcar: ">=4650.0.0", reason: "needs the 4650 kernel" }],
      }),
    );
    const metaServer = await startReleaseServer(dir);
    try {
      const root = makeSandboxRoot("4650.0.0");
      writeConfig(root, `[source]\nurl = "${metaServer.url}"\n[policy]\nversions = "<3.31"\n`);
      expect((await daemonOnce(root)).code).toBe(0);
      writeConfig(root, `[source]\nurl = "${metaServer.url}"\n`);
      expect((await daemonOnce(root)).code).toBe(0);
      expect(readlinkSync(join(root, LINK))).toContain("3.32.0");

      // The machine comes back on an older Flatcar: the boot step, offline, must not keep 3.32.0.
      writeOsRelease(root, "4593.2.5");
      const requestsBefore = metaServer.requests.length;
      const booted = await runArgv(inMountNamespace(root, [NODE, DAEMON, "boot", "--root", root]));
      expect(booted.code).toBe(0);
      expect(readlinkSync(join(root, LINK))).toContain("3.30.0");
      expect(metaServer.requests.length).toBe(requestsBefore);
    } finally {
      await metaServer.close();
    }
  });
});

describe("running Kata sandboxes (real containerd-shim-kata-v2 processes)", () => {
  // A real process whose argv[0] is containerd-shim-kata-v2, as each running Kata sandbox has one. It runs in
  // the daemon's own PID namespace, so other tests running at the same time never see it.
  const shim = (): { sandboxShim: string } => {
    const path = join(mkdtempSync(join(tmpdir(), "kata-shim-")), "containerd-shim-kata-v2");
    copyFileSync("/bin/sleep", path);
    return { sandboxShim: path };
  };

  it("waits, or defers to the next boot, as policy.activation says", async () => {
    const root = sandbox('[policy]\nversions = "<3.31"\n');
    expect((await daemonOnce(root)).code).toBe(0);
    expect(readlinkSync(join(root, LINK))).toContain("3.30.0");
    const state = () => JSON.parse(readFileSync(join(root, "var/lib/kata-sysextd/state.json"), "utf8"));
    const running = shim();

    writeConfig(root, `[source]\nurl = "${server.url}"\n[policy]\nactivation = "wait"\n`);
    const waited = await daemonOnce(root, [], running);
    expect(waited.code).toBe(1);
    expect(waited.stderr).toContain("activation deferred: 1 Kata sandbox running; waiting until none run");
    expect(readlinkSync(join(root, LINK))).toContain("3.30.0");
    expect(state().deferred).toEqual({});
    // Recorded as deferred, saying what waits: not left at the earlier pass's "ok".
    expect(state().lastReconcile).toMatchObject({
      result: "deferred",
      error: 'Kata 3.32.0 waits: 1 Kata sandbox running; waiting until none run (policy.activation = "wait")',
    });
    expect(state().lastReconcile.remedy).toContain("it activates once the last Kata sandbox has ended");
    const since = state().waitingSince;

    writeConfig(root, `[source]\nurl = "${server.url}"\n[policy]\nactivation = "next-boot"\n`);
    const deferred = await daemonOnce(root, [], running);
    expect(deferred.code).toBe(1);
    expect(deferred.stderr).toContain("the new image becomes active at the next boot");
    expect(readlinkSync(join(root, LINK))).toContain("3.30.0");
    expect(state().deferred).toEqual({ "kata-containers": "kata-containers-3.32.0-x86-64.raw" });
    expect(state().lastReconcile).toMatchObject({
      result: "deferred",
      error:
        'Kata 3.32.0 waits: 1 Kata sandbox running; the new image becomes active at the next boot (policy.activation = "next-boot")',
    });
    expect(state().lastReconcile.remedy).toContain("the boot step activates it at the next boot, which is asked for");
    // Recording the deferral leaves the wait's start as it was.
    expect(state().waitingSince).toBe(since);

    // The reboot: no sandbox runs before containerd starts, and the boot step activates what was deferred.
    const booted = await runArgv(inMountNamespace(root, [NODE, DAEMON, "boot", "--root", root]));
    expect(booted.code).toBe(0);
    expect(readlinkSync(join(root, LINK))).toContain("3.32.0");
    expect(state().deferred).toEqual({});
  });

  it("force activates under running sandboxes", async () => {
    const root = sandbox('[policy]\nactivation = "force"\n');
    const ran = await daemonOnce(root, [], shim());
    expect(ran.code).toBe(0);
    expect(readlinkSync(join(root, LINK))).toContain("3.32.0");
  });
});
