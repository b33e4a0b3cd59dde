// A bad newest release must not leave a node without Kata, under real systemd as PID 1 (systemd-nspawn): one
// `kata-sysextd --once` on a fresh node against the sysext-bakery's layout served by a plain static server
// (python3 -m http.server on the host's 127.0.0.1, which the container shares), with 3.30.0 and 3.32.0 good, 3.33.0
// tampered and 3.40.0 built for another OS, ends with 3.32.0 linked and merged for real, exit 0.
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHECKOUT, CONTAINER_NODE, flatcarUsr, kataPayload, unmountUsr } from "../helpers/e2e-daemon.ts";
import { buildImage } from "../helpers/images.ts";
import { skipWithout } from "../helpers/needs.ts";
import { bootContainer, type Container, nspawnUnavailableReason } from "../helpers/nspawn.ts";
import { publishRelease } from "../helpers/release-server.ts";
import { type StaticServer, startStaticServer } from "../helpers/static-server.ts";

const skip = skipWithout(nspawnUnavailableReason(), "the e2e newest-good-candidate test");
const REPO = resolve(import.meta.dirname, "../..");
const MODULES = realpathSync(join(REPO, "node_modules"));
const STORE = "/var/lib/kata-sysextd/images";
const LINK = "/etc/extensions/kata-containers.raw";
const file = (version: string) => `kata-containers-${version}-x86-64.raw`;
// Generous: a boot waits while another test file's container runs (one container at a time).
const BOOT_TIMEOUT_MS = 240_000;

describe.skipIf(skip)("newest good candidate under real systemd (systemd-nspawn)", () => {
  let host = "";
  let usr = "";
  let server: StaticServer | undefined;
  let c: Container | undefined;

  beforeAll(async () => {
    host = mkdtempSync(join(tmpdir(), "kata-e2e-newest-good-"));
    const mirror = join(host, "mirror");
    const releases = [
      { version: "3.30.0" },
      { version: "3.32.0" },
      { version: "3.33.0" },
      { version: "3.40.0", extensionRelease: "ID=ubuntu\nVERSION_ID=22.04\nARCHITECTURE=x86-64\n" },
    ];
    await publishRelease(mirror, {
      images: releases.map((r) => ({
        version: r.version,
        // A kata-like payload: the activation's health stage judges what the image ships.
        content: buildImage({ ...r, files: kataPayload(r.version) }, join(host, "build", `${r.version}.raw`)),
      })),
    });
    const tampered = join(mirror, "kata-containers", file("3.33.0"));
    writeFileSync(tampered, Buffer.concat([readFileSync(tampered), Buffer.from("tampered")]));
    server = await startStaticServer(mirror);
    usr = flatcarUsr(host, "4593.2.5");
    mkdirSync(join(host, "etc"));
    c = await bootContainer({
      loopDevices: true,
      etcDir: join(host, "etc"),
      etcFiles: {
        "kata-sysextd/config.toml": `[source]\nurl = "${server.url}"\n[containerd]\nenabled = false\n`,
      },
      binds: [
        { host: usr, container: "/usr", readOnly: true },
        { host: REPO, container: CHECKOUT, readOnly: true },
        // A checkout whose node_modules links elsewhere (a git worktree sharing one) needs that folder too.
        ...(MODULES === join(REPO, "node_modules") ? [] : [{ host: MODULES, container: MODULES, readOnly: true }]),
      ],
    });
  }, BOOT_TIMEOUT_MS);

  afterAll(async () => {
    await c?.dispose();
    await server?.close();
    if (usr !== "") unmountUsr(usr);
    if (host !== "") rmSync(host, { recursive: true, force: true });
  }, 60_000);

  it("links and merges 3.32.0 in one --once pass, exit 0, and says what it skipped", async () => {
    if (c === undefined) throw new Error("no container");
    const once = await c.exec([CONTAINER_NODE, join(CHECKOUT, "bin/kata-sysextd.js"), "--once"], {
      timeoutMs: 180_000,
    });
    // Under systemd the daemon logs to the journal, with its fields.
    await c.check(["journalctl", "--sync"]);
    const journal = await c.check(["journalctl", "-t", "kata-sysextd", "-o", "cat", "--no-pager"]);
    expect(once.exitCode, `${once.stderr}\n${journal}`).toBe(0);
    expect((await c.check(["readlink", LINK])).trim()).toMatch(new RegExp(`${file("3.32.0")}$`));
    // Merged for real: systemd-sysext lists it, and the image's files are under the running /usr and /opt.
    expect(await c.check(["systemd-sysext", "list"])).toMatch(/kata-containers\s+raw\s+\/etc\/extensions/);
    expect(await c.check(["cat", "/usr/share/kata-containers/VERSION"])).toBe("3.32.0\n");
    expect(await c.check(["/opt/kata/bin/containerd-shim-kata-v2"])).toBe("kata-shim 3.32.0\n");

    expect(journal).toMatch(/skipping kata-containers-3\.40\.0-x86-64\.raw: .*failed inspection/);
    expect(journal).toMatch(/skipping kata-containers-3\.33\.0-x86-64\.raw: .*SHA256SUMS says/);
    expect(journal).toMatch(/kata-containers 3\.32\.0 is active; newer releases were skipped: 3\.40\.0 .*; 3\.33\.0 /);
    const state = JSON.parse(await c.check(["cat", "/var/lib/kata-sysextd/state.json"]));
    expect(state.skipped["kata-containers"].map((s: { version: string }) => s.version).sort()).toEqual([
      "3.33.0",
      "3.40.0",
    ]);
    // Only the good one is in the store; the other OS's image is in quarantine, the tampered one nowhere.
    expect((await c.check(["ls", STORE])).split("\n").filter((f) => f.endsWith(".raw"))).toEqual([file("3.32.0")]);
    expect((await c.exec(["test", "-f", `/var/lib/kata-sysextd/quarantine/${file("3.40.0")}`])).exitCode).toBe(0);
  });
});
