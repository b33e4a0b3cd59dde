// A host set up the sysext-bakery way: its transfer file read as the source ([source] sysupdate), served by a
// plain static server (python3 -m http.server on 127.0.0.1) from a directory laid out as the bakery's; real
// squashfs images, real `kata-sysextd --once` with systemd-sysext 252 under --root.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImage } from "../../helpers/images.ts";
import { publishRelease } from "../../helpers/release-server.ts";
import { daemonOnce, makeSandboxRoot, writeConfig } from "../../helpers/sandbox.ts";
import { type StaticServer, startStaticServer } from "../../helpers/static-server.ts";

const NAME = "kata-containers";
const LINK = `etc/extensions/${NAME}.raw`;
const TRANSFER = `/etc/sysupdate.${NAME}.d/${NAME}.conf`;
const file = (version: string) => `${NAME}-${version}-x86-64.raw`;

let work = "";
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
  const mirror = join(work, "mirror");
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

  it("Verify=yes (sysupdate's default) needs SHA256SUMS.gpg, which the bakery does not publish", async () => {
    const root = bakeryHost();
    writeFileSync(join(root, TRANSFER), transfer(server.url, "yes"));
    writeFileSync(join(root, "etc/kata-sysextd/trusted.asc"), "");
    const ran = await daemonOnce(root);
    expect(ran.code).toBe(1);
    expect(ran.stderr).toContain("SHA256SUMS.gpg is missing, so SHA256SUMS cannot be trusted");
    expect(existsSync(join(root, LINK))).toBe(false);
    expect(readFileSync(join(root, TRANSFER), "utf8")).toContain("Verify=yes");
  });
});
