// `npm run build:sysext` for real: two builds are byte-identical; the image holds only /usr, root-owned, with
// fixed times; the real systemd-sysext merges it under --root against a Flatcar os-release (and refuses another
// OS); and the merged tree's own Node runs the bundled daemon: --help, and --once against a loopback release
// server publishing kata-like images.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkGlibcFloor, OLDEST_FLATCAR } from "../../../src/delivery/glibc-floor.ts";
import { extensionReleaseText, imageFileName, PATHS, SYSEXT_NAME } from "../../../src/delivery/layout.ts";
import { butaneToIgnition, type IgnitionConfig, IMAGE_PATH, imageBaseUrl } from "../../../src/delivery/provisioning.ts";
import { buildImage } from "../../helpers/images.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import { inMountNamespace, makeSandboxRoot, PROJECT, runArgv, writeConfig } from "../../helpers/sandbox.ts";
import { type Built, buildSysext, sharedBuild, VERSION } from "./build.ts";
import { validateIgnition } from "./ignition.ts";

const BUILD_TIMEOUT = 300_000;
let built: Built;
const temps: string[] = [];
const temp = (prefix: string): string => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
};

beforeAll(async () => {
  built = await sharedBuild();
}, BUILD_TIMEOUT);
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

/** `unsquashfs -lln`: mode, uid/gid, size, date, time, path — one line per entry. */
function listing(image: string): string[] {
  return execFileSync("unsquashfs", ["-lln", "-d", "", image], { encoding: "utf8", maxBuffer: 16 << 20 })
    .split("\n")
    .filter((line) => /^[-dlcbps][rwxsStT-]{9} /.test(line));
}

/** A sandbox root whose /etc/extensions holds the built image as a regular file (systemd-sysext 252 under --root ignores symlinks). */
function rootWithImage(osReleaseId = "flatcar"): string {
  const root = makeSandboxRoot();
  temps.push(root);
  if (osReleaseId !== "flatcar") {
    writeFileSync(join(root, "usr/lib/os-release"), `ID=${osReleaseId}\nVERSION_ID=12\n`);
  }
  copyFileSync(built.image, join(root, "etc/extensions", `${SYSEXT_NAME}.raw`));
  return root;
}

/** Merges under --root in a private mount namespace, then runs `script` (sh) with $R set to the root. */
function mergedThen(root: string, script: string, timeoutMs = 120_000) {
  return runArgv(
    inMountNamespace(root, ["sh", "-c", `systemd-sysext merge --root="$R" >&2 && ${script}`]),
    // No checkout Node on PATH: what runs is the merged tree's.
    { timeoutMs, env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } },
  );
}

describe("build:sysext", () => {
  it(
    "is reproducible: a second build of the same commit is byte-identical",
    async () => {
      // Equal inputs must give equal bytes. When the checkout changed between two builds (someone editing while
      // the suite runs), the pair proves nothing: take the next pair. In CI the first pair decides.
      let previous = built;
      for (let attempt = 0; attempt < 3; attempt++) {
        const again = await buildSysext(temp("kata-sysextd-rebuild-"));
        expect(again.inputs).toMatch(/^[0-9a-f]{64}$/);
        if (again.inputs === previous.inputs) {
          expect(again.sha256).toBe(previous.sha256);
          expect(again.sums).toBe(`${again.sha256}  ${imageFileName(VERSION)}\n`);
          expect(again.output).toMatch(/kata-sysextd-\d+\.\d+\.\d+-x86-64\.raw: \d+\.\d MiB/);
          return;
        }
        previous = again;
      }
      throw new Error("the checkout changed during every pair of builds: reproducibility not decided");
    },
    BUILD_TIMEOUT,
  );

  it("writes the Butane and Ignition for this very image beside it: its file name and its real SHA-256", () => {
    const dir = dirname(built.image);
    const butane = readFileSync(join(dir, "butane.yaml"), "utf8");
    const ignition = JSON.parse(readFileSync(join(dir, "ignition.json"), "utf8")) as IgnitionConfig;
    expect(butaneToIgnition(butane)).toEqual(ignition);
    expect(validateIgnition(ignition), JSON.stringify(validateIgnition.errors)).toBe(true);
    const image = ignition.storage?.files?.find((f) => f.path === IMAGE_PATH);
    expect(image?.contents.verification?.hash).toBe(`sha256-${built.sha256}`);
    expect(built.sums).toContain(`${built.sha256}  ${imageFileName(VERSION)}`);
    const template = readFileSync(join(PROJECT, "config/butane.yaml"), "utf8");
    expect(image?.contents.source).toBe(`${imageBaseUrl(template)}${imageFileName(VERSION)}`);
    expect(built.output).toContain(`hash: sha256-${built.sha256}`);
  });

  it("holds only /usr, owned by root, with fixed times, and everything the host needs to run it", () => {
    const lines = listing(built.image);
    // The image's own root prints as an empty path.
    const paths = lines.map((line) => / \d\d:\d\d (.*)$/.exec(line)?.[1] ?? line).filter((p) => p !== "");
    expect(paths.filter((p) => p !== "/usr" && !p.startsWith("/usr/"))).toEqual([]);
    for (const line of lines) {
      expect(line).toMatch(/^\S+ 0\/0 +\d+ 1970-01-01 00:00 /);
    }
    for (const path of Object.values(PATHS)) expect(paths).toContain(`/${path}`);
    for (const unit of ["kata-sysextd.service", "kata-sysextd-boot.service"]) {
      expect(paths).toContain(`/${PATHS.units}/${unit}`);
    }
    for (const helper of ["kvm-probe", "xattr-get", "flock.node"])
      expect(paths).toContain(`/${PATHS.helpers}/${helper}`);
    expect(paths).toContain(`/${PATHS.journaldAddon}/build/Release/journal_send.node`);
    // The boot step's script form beside the daemon's bundle (scripts/bundle.ts, buildScriptForm).
    expect(paths).toContain(`/${dirname(PATHS.daemonBundle)}/kata-sysextd.cjs`);
    // The README's links into docs/ resolve on the node: the operator's guide is there.
    for (const doc of ["operations.md", "interface.md", "design.md"]) expect(paths).toContain(`/${PATHS.docs}/${doc}`);
  });

  it("reports the ABI check of every ELF in it against the oldest supported Flatcar's glibc", async () => {
    expect(built.output).toContain(`abi ${PATHS.node}: GLIBC_2.28 <= ${OLDEST_FLATCAR.glibc}? yes`);
    expect(built.output).not.toMatch(/\? NO/);
    // The same check fails for a floor below what the runtime needs: the build would stop.
    const tree = temp("kata-sysextd-tree-");
    execFileSync("unsquashfs", ["-q", "-n", "-f", "-d", tree, built.image, `/${PATHS.node}`]);
    const [finding] = await checkGlibcFloor([join(tree, PATHS.node)], { ...OLDEST_FLATCAR, glibc: "GLIBC_2.27" });
    expect(finding?.glibcNeeded).toBe("GLIBC_2.28");
    expect(finding?.problems).toContain(`needs GLIBC_2.28, Flatcar ${OLDEST_FLATCAR.flatcar} has GLIBC_2.27`);
    expect(finding?.libraries).toEqual(expect.arrayContaining(["libc.so.6", "libstdc++.so.6"]));
  });

  it("merges with the real systemd-sysext on Flatcar, and the merged daemon answers --help and --version", async () => {
    const root = rootWithImage();
    const ran = await mergedThen(
      root,
      'cat "$R/usr/lib/extension-release.d/extension-release.kata-sysextd" && "$R/usr/bin/kata-sysextd" --version && "$R/usr/bin/kata-sysextd" --help',
    );
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toContain(extensionReleaseText());
    expect(ran.stdout).toContain(`kata-sysextd ${VERSION}\n`);
    expect(ran.stdout).toContain("kata-sysextd --once [--config FILE] [--root DIR]");
  });

  it("is refused by systemd-sysext on a host that is not Flatcar (ID=flatcar, SYSEXT_LEVEL=1.0)", async () => {
    const root = rootWithImage("debian");
    const ran = await runArgv(inMountNamespace(root, ["systemd-sysext", "merge", `--root=${root}`]));
    expect(`${ran.stdout}${ran.stderr}`).toMatch(/does not match|No suitable extensions|No extensions found/i);
  });

  describe("--once from the merged tree against a loopback release server", () => {
    let server: ReleaseServer;
    beforeAll(async () => {
      const pub = temp("kata-sysextd-pub-");
      mkdirSync(join(pub, "build"));
      const images = ["3.31.1", "3.32.0"].map((version) => ({
        version,
        content: buildImage({ version }, join(pub, "build", `${version}.raw`)),
      }));
      await publishRelease(pub, { images });
      server = await startReleaseServer(pub);
    });
    afterAll(async () => server?.close());

    it("fetches, verifies and links the newest Kata image, and exits 0", async () => {
      const root = rootWithImage();
      writeConfig(root, `[source]\nurl = "${server.url}"\n`);
      const ran = await mergedThen(
        root,
        'KATA_SYSEXTD_LOG=stderr "$R/usr/bin/kata-sysextd" --once --root "$R"; code=$?; readlink "$R/etc/extensions/kata-containers.raw"; exit $code',
      );
      expect(ran.code, ran.stderr).toBe(0);
      expect(ran.stderr).toContain("activated kata-containers-3.32.0-x86-64.raw");
      expect(ran.stdout.trim()).toBe("../../var/lib/kata-sysextd/images/kata-containers-3.32.0-x86-64.raw");
      expect(server.requests.some((r) => r.path.endsWith("kata-containers-3.32.0-x86-64.raw"))).toBe(true);
    });
  });
});
