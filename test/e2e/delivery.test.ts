// The daemon delivered the way an operator delivers it to Flatcar: a container boots with real systemd as PID 1,
// its /etc holding only what config/ignition.json writes (the daemon's sysext image in /etc/extensions, its
// config.toml, the enablement links, the bootstrap unit), and nothing of this checkout visible. It comes up with
// the daemon running from the merged extension, logging through the addon the image ships, and answering /status.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { imageFileName, PATHS, SYSEXT_NAME } from "../../src/delivery/layout.ts";
import { decodeDataUrl, type IgnitionConfig } from "../../src/delivery/provisioning.ts";
import { MessageId } from "../../src/log/logger.ts";
import { writeOsRelease } from "../helpers/images.ts";
import { skipWithout } from "../helpers/needs.ts";
import { freePort } from "../helpers/net.ts";
import { bootContainer, type Container, type EtcEntry, nspawnUnavailableReason } from "../helpers/nspawn.ts";
import { PROJECT } from "../helpers/sandbox.ts";
import { sharedBuild, VERSION } from "../integration/delivery/build.ts";
import { etcFilesOf } from "../integration/delivery/ignition.ts";

const skip = skipWithout(nspawnUnavailableReason(), "the e2e delivery test");

const DAEMON_UNIT = "kata-sysextd.service";
const BOOTSTRAP_UNIT = "kata-sysextd-bootstrap.service";
const CONFIG = "/etc/kata-sysextd/config.toml";
const BOOT_TIMEOUT_MS = 420_000; // the build (shared with the integration test in one run) plus a queued boot
const STEP_TIMEOUT_MS = 60_000;

interface StatusDoc {
  daemon: { version: string; startedAt: string };
  host: { id: string; versionId: string; sysextLevel: string; arch: string };
  state: string;
}

describe.skipIf(skip)("the daemon's own sysext, provisioned by Ignition, under real systemd", () => {
  let host = "";
  let usr = "";
  let port = 0;
  /** What Ignition writes into /etc, as the harness's etcFiles. */
  let provisioned: Record<string, EtcEntry> = {};
  let c: Container;
  const sh = (argv: string[]) => c.check(argv);
  const unitProperty = async (unit: string, property: string) =>
    (await sh(["systemctl", "show", "-P", property, "--", unit])).trim();
  const boot = async (etcFiles: Record<string, EtcEntry>): Promise<Container> => {
    await c?.dispose();
    return bootContainer({
      etcFiles,
      loopDevices: true,
      binds: [{ host: usr, container: "/usr", readOnly: true }],
      bootTimeoutMs: 90_000,
    });
  };

  beforeAll(async () => {
    const built = await sharedBuild();
    host = mkdtempSync(join(tmpdir(), "kata-e2e-delivery-"));
    // Flatcar's os-release over the machine's /usr as one read-only overlay: a file bound over
    // /usr/lib/os-release would be hidden by systemd-sysext's own overlay once it merges.
    const layer = join(host, "os");
    writeOsRelease(layer);
    usr = join(host, "usr");
    mkdirSync(usr);
    execFileSync("mount", ["-t", "overlay", "overlay", "-o", `ro,lowerdir=${join(layer, "usr")}:/usr`, usr]);

    const ignition = JSON.parse(readFileSync(join(PROJECT, "config/ignition.json"), "utf8")) as IgnitionConfig;
    // Ignition would download the published image; here it is this build's, by the same file name.
    provisioned = etcFilesOf(ignition, (file) => {
      expect(basename(file.contents.source)).toBe(imageFileName(VERSION));
      return readFileSync(built.image);
    });
    // The one change to what Ignition writes: the container shares this machine's network, where 8720 may be
    // taken (the demo, another test), so the API listens on a free loopback port instead.
    port = await freePort();
    const config = ignition.storage?.files?.find((f) => f.path === CONFIG);
    const toml = decodeDataUrl(config?.contents.source ?? "").toString("utf8");
    expect(toml).toContain('listen = "127.0.0.1:8720"');
    // And no canary: runc cannot start containers inside nspawn (test/integration/canary runs it outside).
    provisioned["kata-sysextd/config.toml"] =
      `${toml.replace("127.0.0.1:8720", `127.0.0.1:${port}`)}\n[health]\ncanary = false\n`;
    c = await boot(provisioned);
  }, BOOT_TIMEOUT_MS);

  afterAll(async () => {
    await c?.dispose();
    if (usr) execFileSync("umount", ["-l", usr]);
    if (host) rmSync(host, { recursive: true, force: true });
  });

  it("boots with only the Ignition-written files in /etc and nothing of the checkout", async () => {
    expect(await sh(["test", "-e", PROJECT]).catch(() => "absent")).toBe("absent");
    expect(await sh(["stat", "-c", "%F", `/etc/extensions/${SYSEXT_NAME}.raw`])).toBe("regular file\n");
    expect(await sh(["grep", "^ID=", "/usr/lib/os-release"])).toBe("ID=flatcar\n");
  });

  it("merges the image and the bootstrap unit starts the daemon after systemd-sysext", async () => {
    await c.waitForUnit(DAEMON_UNIT, "active", STEP_TIMEOUT_MS);
    expect(await sh(["systemd-sysext", "list"])).toMatch(/kata-sysextd\s+raw\s+\/etc\/extensions\/kata-sysextd\.raw/);
    expect(await unitProperty("systemd-sysext.service", "ActiveState")).toBe("active");
    expect(await unitProperty(BOOTSTRAP_UNIT, "ActiveState")).toBe("active");
    expect(await unitProperty(BOOTSTRAP_UNIT, "Result")).toBe("success");
    const monotonic = async (unit: string, property: string) => Number(await unitProperty(unit, property));
    expect(await monotonic(BOOTSTRAP_UNIT, "ExecMainStartTimestampMonotonic")).toBeGreaterThanOrEqual(
      await monotonic("systemd-sysext.service", "ActiveEnterTimestampMonotonic"),
    );
    // The daemon's unit comes from the image, enabled by Ignition's link.
    const fragment = await unitProperty(DAEMON_UNIT, "FragmentPath");
    expect(fragment).toMatch(/^(\/usr)?\/lib\/systemd\/system\/kata-sysextd\.service$/); // Debian: /lib -> usr/lib
    expect(await sh(["cat", fragment])).toBe(readFileSync(join(PROJECT, "units", DAEMON_UNIT), "utf8"));
    expect(await unitProperty(DAEMON_UNIT, "UnitFileState")).toBe("enabled");
  });

  it("runs the daemon on the image's Node and bundle, sandboxed as units/ says", async () => {
    const pid = await unitProperty(DAEMON_UNIT, "MainPID");
    expect(await sh(["readlink", `/proc/${pid}/exe`])).toBe(`/${PATHS.node}\n`);
    expect((await sh(["cat", `/proc/${pid}/cmdline`])).split("\0").slice(0, 2)).toEqual([
      `/${PATHS.node}`,
      `/${PATHS.daemonBundle}`,
    ]);
    expect(await unitProperty(DAEMON_UNIT, "ProtectSystem")).toBe("strict");
    expect(await unitProperty(DAEMON_UNIT, "NRestarts")).toBe("0");
  });

  it("answers /status on its configured port with the bundled version and the Flatcar host", async () => {
    const doc = await until(async () => JSON.parse(await sh(["curl", "-sf", `http://127.0.0.1:${port}/status`])));
    const status = doc as StatusDoc;
    expect(status.daemon.version).toBe(VERSION);
    expect(status.host).toMatchObject({ id: "flatcar", sysextLevel: "1.0", arch: "x86-64" });
    // The CLI bundle from the image reads the same daemon (over its root-only unix socket).
    const ctl = JSON.parse(await sh(["/usr/bin/kata-sysextctl", "status", "--json"])) as StatusDoc;
    expect(ctl.daemon.version).toBe(VERSION);
  });

  it("logs to journald through the native addon the image ships, explained by its catalog", async () => {
    const entries = await c.journal(DAEMON_UNIT);
    const own = entries.filter((e) => e.SYSLOG_IDENTIFIER === "kata-sysextd");
    expect(own.length).toBeGreaterThan(0);
    // Structured fields only travel through sd_journal_send (the addon); stderr lines would have none.
    expect(own.some((e) => Object.keys(e).some((k) => k.startsWith("KATA_") || k.startsWith("FLATCAR_")))).toBe(true);
    // The bootstrap unit compiled the catalog the image ships: `journalctl -x` has the texts.
    expect(await sh(["journalctl", "--list-catalog", MessageId.imageActivated])).toContain(
      "Kata Containers extension @KATA_SYSEXT_VERSION@ activated",
    );
  });
  it(
    "without the bootstrap unit, systemd 252 merges the image but never starts the daemon (why the unit exists)",
    async () => {
      // As on Flatcar, systemd-sysext.service is enabled by the OS itself; only the bootstrap unit is missing.
      const etcFiles = Object.fromEntries(
        Object.entries(provisioned).filter(([path]) => !path.includes(BOOTSTRAP_UNIT)),
      );
      etcFiles["systemd/system/sysinit.target.wants/systemd-sysext.service"] = {
        symlink: "/usr/lib/systemd/system/systemd-sysext.service",
      };
      c = await boot(etcFiles);
      expect(await sh(["systemd-sysext", "list"])).toMatch(/kata-sysextd\s+raw/);
      expect(await sh(["test", "-x", "/usr/bin/kata-sysextd"])).toBe("");
      expect(await unitProperty(DAEMON_UNIT, "ActiveState")).toBe("inactive");
    },
    BOOT_TIMEOUT_MS,
  );
});

/** Retries `probe` until it resolves (the API may still be starting). */
async function until<T>(probe: () => Promise<T>, timeoutMs = STEP_TIMEOUT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await probe();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(250);
    }
  }
}
