// A host set up the sysext-bakery way: its transfer file read as the source ([source] sysupdate), served by a
// plain static server (python3 -m http.server on 127.0.0.1) from a directory laid out as the bakery's; real
// squashfs images, real `kata-sysextd --once` with systemd-sysext 252 under --root.
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImage } from "../../helpers/images.ts";
import { publishRelease } from "../../helpers/release-server.ts";
import {
  DAEMON,
  daemonOnce,
  inMountNamespace,
  makeSandboxRoot,
  NODE,
  runArgv,
  writeConfig,
} from "../../helpers/sandbox.ts";
import { type StaticServer, startStaticServer } from "../../helpers/static-server.ts";

const NAME = "kata-containers";
const LINK = `etc/extensions/${NAME}.raw`;
const TRANSFER = `/etc/sysupdate.${NAME}.d/${NAME}.conf`;
const file = (version: string) => `${NAME}-${version}-x86-64.raw`;

let work = "";
let mirror = "";
let server: StaticServer;
const roots: string[] = [];

/** The transfer file the bakery's Butane writes, its Path= at `url`. */
function transfer(url: string, verify = "false"): string {
  return `[Transfer]\nVerify=${verify}\n\n[Source]\nType=url-file\nPath=${url}${NAME}/\nMatchPattern=${NAME}-@v-%a.raw\n\n[Target]\nInstancesMax=3\nType=regular-file\nPath=/opt/extensions/${NAME}\nCurrentSymlink=/etc/extensions/${NAME}.raw\n`;
}

function bakeryHost(): string {
  const root = makeSandboxRoot();
  roots.push(root);
  mkdirSync(join(root, `etc/sysupdate.${NAME}.d`), { recursive: true });
  writeFileSync(join(root, TRANSFER), transfer(server.url));
  writeConfig(root, `[source]\nsysupdate = "${TRANSFER}"\n[containerd]\nenabled = false\n`);
  return root;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kata-bakery-"));
  mirror = join(work, "mirror");
  await publishRelease(mirror, {
    images: ["3.21.0", "3.32.0"].map((version) => ({
      version,
      content: buildImage({ version }, join(work, "build", `${version}.raw`)),
    })),
  });
  server = await startStaticServer(mirror);
}, 60_000);

afterAll(async () => {
  await server?.close();
  for (const root of roots) rmSync(root, { recursive: true, force: true });
  if (work !== "") rmSync(work, { recursive: true, force: true });
});

describe("[source] sysupdate", () => {
  it("fetches what the bakery's transfer file names, and says once that its [Target] is not used", async () => {
    const root = bakeryHost();
    const ran = await daemonOnce(root);
    expect(ran.code, ran.stderr).toBe(0);
    expect(readlinkSync(join(root, LINK))).toBe(`../../var/lib/kata-sysextd/images/${file("3.32.0")}`);
    const said = ran.stderr.split("\n").filter((l) => l.includes("[Target]"));
    expect(said).toHaveLength(1);
    expect(said[0]).toContain(`${TRANSFER}: [Target] (InstancesMax=3, Type=regular-file`);
    expect(said[0]).toContain("is not used");
    expect(server.requests().some((r) => r.startsWith(`GET /${NAME}/${file("3.32.0")} `))).toBe(true);
  });

  it("exits 2 naming the file, line and key it cannot honour, and changes nothing", async () => {
    const root = bakeryHost();
    writeFileSync(join(root, TRANSFER), transfer(server.url).replace("Verify=false", "Verify=false\nMinVersion=3.30"));
    const ran = await daemonOnce(root);
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain(`${TRANSFER}:3: [Transfer] MinVersion=: kata-sysextd cannot honour this`);
    expect(existsSync(join(root, LINK))).toBe(false);
  });

  it("a Path= with no SHA256SUMS answers 404, and the remedy points at Path=", async () => {
    const root = bakeryHost();
    writeFileSync(join(root, TRANSFER), transfer(`${server.url}nowhere/`));
    const ran = await daemonOnce(root);
    expect(ran.code).toBe(1);
    expect(ran.stderr).toMatch(/nowhere\/kata-containers\/SHA256SUMS: HTTP 404/);
    expect(ran.stderr).toContain(
      "REMEDY=check [source] url and name (or Path= in the [source] sysupdate transfer file)",
    );
  });

  it("Verify=yes (sysupdate's default) needs SHA256SUMS.gpg, which the bakery does not publish", async () => {
    const root = bakeryHost();
    writeFileSync(join(root, TRANSFER), transfer(server.url, "yes"));
    writeFileSync(join(root, "etc/kata-sysextd/trusted.asc"), "");
    const ran = await daemonOnce(root);
    expect(ran.code).toBe(1);
    expect(ran.stderr).toContain("SHA256SUMS.gpg is missing, so SHA256SUMS cannot be trusted");
    // The way out names the transfer file's key: [source] verify cannot be set beside [source] sysupdate.
    expect(ran.stderr).toContain("Verify=no in the [source] sysupdate transfer file");
    expect(existsSync(join(root, LINK))).toBe(false);
    expect(readFileSync(join(root, TRANSFER), "utf8")).toContain("Verify=yes");
  });
});

/**
 * What the bakery's Butane leaves on a node: the image under /opt/extensions, the link to it (absolute), the
 * generic sysupdate timer enabled with a drop-in that updates this extension.
 */
function provisionedByButane(root: string, image: string): string {
  const opt = join(root, "opt/extensions", NAME, file("3.21.0"));
  mkdirSync(join(root, "opt/extensions", NAME), { recursive: true });
  copyFileSync(image, opt);
  symlinkSync(`/opt/extensions/${NAME}/${file("3.21.0")}`, join(root, LINK));
  const wants = join(root, "etc/systemd/system/timers.target.wants");
  mkdirSync(wants, { recursive: true });
  symlinkSync("/usr/lib/systemd/system/systemd-sysupdate.timer", join(wants, "systemd-sysupdate.timer"));
  const dropins = join(root, "etc/systemd/system/systemd-sysupdate.service.d");
  mkdirSync(dropins, { recursive: true });
  writeFileSync(
    join(dropins, `${NAME}.conf`),
    `[Service]\nExecStartPre=/usr/lib/systemd/systemd-sysupdate -C ${NAME} update\n`,
  );
  return opt;
}

describe("taking over a host set up the bakery way", () => {
  it("records the bakery's image as previous, warns once about the timer, and deletes nothing it did not create", async () => {
    const root = bakeryHost();
    const opt = provisionedByButane(root, join(mirror, NAME, file("3.21.0")));
    const bytes = readFileSync(opt);
    const ran = await daemonOnce(root);
    expect(ran.code, ran.stderr).toBe(0);
    expect(readlinkSync(join(root, LINK))).toBe(`../../var/lib/kata-sysextd/images/${file("3.32.0")}`);
    expect(ran.stderr).toContain(`took over ${join(root, LINK)} from ${opt}`);
    const warnings = ran.stderr.split("\n").filter((l) => l.includes("would fight kata-sysextd"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`remove /etc/systemd/system/systemd-sysupdate.service.d/${NAME}.conf`);
    expect(warnings[0]).toContain("systemctl disable --now systemd-sysupdate.timer");
    const state = JSON.parse(readFileSync(join(root, "var/lib/kata-sysextd/state.json"), "utf8"));
    expect(state.previous).toEqual({ [NAME]: file("3.21.0") });
    expect(readFileSync(join(root, "var/lib/kata-sysextd/images", file("3.21.0")))).toEqual(bytes);
    expect(readFileSync(opt)).toEqual(bytes);

    // Ours now: the next pass takes nothing over and says nothing about the timer again.
    const again = await daemonOnce(root);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toContain("took over");
    expect(again.stderr).not.toContain("would fight");
    expect(readFileSync(opt)).toEqual(bytes);
  });

  it("takes over an image written straight to /etc/extensions as a regular file: kept, and recorded as previous", async () => {
    const root = bakeryHost();
    const bytes = readFileSync(join(mirror, NAME, file("3.21.0")));
    writeFileSync(join(root, LINK), bytes);
    const ran = await daemonOnce(root);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stderr).toContain(
      `took over ${join(root, LINK)}, a regular file: verified against SHA256SUMS as ${file("3.21.0")}`,
    );
    expect(readlinkSync(join(root, LINK))).toBe(`../../var/lib/kata-sysextd/images/${file("3.32.0")}`);
    expect(JSON.parse(readFileSync(join(root, "var/lib/kata-sysextd/state.json"), "utf8")).previous).toEqual({
      [NAME]: file("3.21.0"),
    });
    expect(readFileSync(join(root, "var/lib/kata-sysextd/images", file("3.21.0")))).toEqual(bytes);
  });

  it("the boot step, without the network, leaves such a file in place for the daemon's pass", async () => {
    const root = bakeryHost();
    expect((await daemonOnce(root)).code).toBe(0);
    rmSync(join(root, LINK));
    const bytes = readFileSync(join(mirror, NAME, file("3.21.0")));
    writeFileSync(join(root, LINK), bytes);
    const boot = await runArgv(inMountNamespace(root, [NODE, DAEMON, "boot", "--root", root]));
    expect(boot.code).toBe(1);
    expect(boot.stderr).toContain("a pass with the network takes the image over once SHA256SUMS vouches for it");
    expect(readFileSync(join(root, LINK))).toEqual(bytes);
    // The pass that follows it takes the file over, as on a host that never booted with kata-sysextd.
    const ran = await daemonOnce(root);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stderr).toContain(`took over ${join(root, LINK)}, a regular file`);
  });

  it("leaves a regular file it cannot verify in place, and says what to do", async () => {
    const root = bakeryHost();
    writeFileSync(join(root, LINK), "an image from somewhere else\n");
    const ran = await daemonOnce(root);
    expect(ran.code).toBe(1);
    expect(ran.stderr).toContain("is a regular file the source's SHA256SUMS does not list");
    expect(readFileSync(join(root, LINK), "utf8")).toBe("an image from somewhere else\n");
  });

  it("leaves a link to an image it cannot verify as it is, and says what to do", async () => {
    const root = bakeryHost();
    const opt = provisionedByButane(root, join(mirror, NAME, file("3.32.0")));
    const ran = await daemonOnce(root);
    expect(ran.code).toBe(1);
    expect(ran.stderr).toContain(`names ${opt}, which does not match its SHA256SUMS line`);
    expect(readlinkSync(join(root, LINK))).toBe(`/opt/extensions/${NAME}/${file("3.21.0")}`);
    expect(existsSync(opt)).toBe(true);
  });
});
