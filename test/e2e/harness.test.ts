// Proves the end-to-end harness against real systemd as PID 1: boot, a symlinked squashfs extension merged by the
// real systemd-sysext against a Flatcar identity, journald fields, unit tracking, a bus policy on the real system
// bus, a clean poweroff, and a "reboot" that keeps /etc and merges at boot.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImage, writeOsRelease } from "../helpers/images.ts";
import { skipWithout } from "../helpers/needs.ts";
import { allowBusName, bootContainer, type Container, nspawnUnavailableReason } from "../helpers/nspawn.ts";
import { isRunning, processes, readProc } from "../helpers/proc.ts";

const skip = skipWithout(nspawnUnavailableReason(), "the e2e harness test");

const REPO = resolve(import.meta.dirname, "../..");
const STORE = "/var/lib/kata-sysextd/images";
const IMAGE = "kata-containers-3.32.0-x86-64.raw";
const LINK = "/etc/extensions/kata-containers.raw";
const MESSAGE_ID = "5d1b6f0e8c2a4b7f9e3d2c1b0a998877";
// Generous: a boot waits while another test file's container runs (one container at a time).
const BOOT_TIMEOUT_MS = 240_000;

describe.skipIf(skip)("nspawn harness: real systemd as PID 1", () => {
  const started = Date.now();
  const timings: Record<string, number> = {};
  let host = "";
  let c: Container;

  const bootOptions = () => ({
    osRelease: join(host, "root/usr/lib/os-release"),
    loopDevices: true,
    etcDir: join(host, "etc"),
    binds: [
      { host: join(host, "images"), container: STORE, readOnly: true },
      { host: REPO, container: REPO, readOnly: true },
    ],
  });

  beforeAll(async () => {
    host = mkdtempSync(join(tmpdir(), "kata-e2e-harness-"));
    buildImage({ version: "3.32.0" }, join(host, "images", IMAGE));
    writeOsRelease(join(host, "root"));
    c = await bootContainer({
      ...bootOptions(),
      // No canary: runc cannot start containers inside nspawn (test/integration/canary runs it outside).
      etcFiles: { "kata-sysextd/config.toml": '[policy]\nversions = ">=3.21.0"\n[health]\ncanary = false\n' },
    });
    timings.firstBootMs = c.bootMs;
  }, BOOT_TIMEOUT_MS);

  afterAll(async () => {
    await c?.dispose();
    if (host) rmSync(host, { recursive: true, force: true });
    timings.totalMs = Date.now() - started;
    console.log(`e2e harness timings: ${JSON.stringify(timings)}`);
  });

  it("boots real systemd as PID 1 in a container of its own", async () => {
    expect(["running", "degraded"]).toContain((await c.exec(["systemctl", "is-system-running"])).stdout.trim());
    expect(c.failedAtBoot).toEqual([]);
    expect((await c.check(["cat", "/proc/1/comm"])).trim()).toBe("systemd");
    expect((await c.check(["systemd-detect-virt", "--container"])).trim()).toBe("systemd-nspawn");
    expect((await c.check(["hostname"])).trim()).toBe(c.name);
    // A bus call to the real manager, the way the daemon will talk to it.
    const version = await c.check([
      "busctl",
      "get-property",
      "org.freedesktop.systemd1",
      "/org/freedesktop/systemd1",
      "org.freedesktop.systemd1.Manager",
      "Version",
    ]);
    expect(version).toMatch(/^s "\d+/);
  });

  it("sees the bound Flatcar identity and the /etc files written before boot", async () => {
    const osRelease = await c.check(["cat", "/usr/lib/os-release"]);
    expect(osRelease).toContain("ID=flatcar");
    expect(osRelease).toContain("SYSEXT_LEVEL=1.0");
    expect(await c.check(["cat", "/etc/kata-sysextd/config.toml"])).toContain('versions = ">=3.21.0"');
    // The container wrote its machine-id into the bound /etc, so a second boot keeps it.
    expect((await c.check(["cat", "/etc/machine-id"])).trim()).toMatch(/^[0-9a-f]{32}$/);
  });

  it("merges a symlinked squashfs image with systemd-sysext refresh", async () => {
    expect((await c.exec(["test", "-e", "/usr/share/kata-containers/VERSION"])).exitCode).not.toBe(0);
    await c.check(["mkdir", "-p", "/etc/extensions"]);
    await c.check(["ln", "-s", `${STORE}/${IMAGE}`, LINK]);

    await c.check(["systemd-sysext", "refresh"]);

    expect(await c.check(["cat", "/usr/share/kata-containers/VERSION"])).toBe("3.32.0\n");
    expect(await c.check(["/opt/kata/bin/containerd-shim-kata-v2"])).toBe("kata-shim 3.32.0\n");
    expect(await c.check(["systemd-sysext", "list"])).toMatch(/kata-containers\s+raw\s+\/etc\/extensions/);
    const status = JSON.parse(await c.check(["systemd-sysext", "status", "--json=short"])) as {
      hierarchy: string;
      extensions: string[] | string;
    }[];
    expect(status.find((h) => h.hierarchy === "/usr")?.extensions).toContain("kata-containers");
    // The merged /usr is a read-only overlay: the host's own /usr was not touched.
    expect((await c.check(["stat", "-f", "-c", "%T", "/usr"])).trim()).toBe("overlayfs");
  });

  it("journal() returns the structured fields a transient unit logged", async () => {
    const unit = "kata-e2e-logger.service";
    // The daemon's own logging stack (the systemd-journald addon). The sender stays alive until journald has
    // stored its entry: journald finds the unit from the sender's PID, and a sender that already exited has none.
    const script = `import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
const Journald = createRequire("${REPO}/")("systemd-journald");
new Journald({ syslog_identifier: "kata-e2e" }).notice("kata image activated", {
  MESSAGE_ID: "${MESSAGE_ID}", KATA_SYSEXT_NAME: "kata-containers", KATA_SYSEXT_VERSION: "3.32.0",
});
for (let i = 0; i < 200; i++) {
  if (execFileSync("journalctl", ["-q", "-o", "cat", "MESSAGE_ID=${MESSAGE_ID}"]).length > 0) break;
  await new Promise((resolve) => setTimeout(resolve, 50));
}
`;
    await c.writeFile("/run/kata-e2e/log.mjs", script);
    await c.check(["systemd-run", "--quiet", "--wait", `--unit=${unit}`, process.execPath, "/run/kata-e2e/log.mjs"]);

    const entry = (await c.journal(unit)).find((e) => e.MESSAGE_ID === MESSAGE_ID);
    expect(entry).toMatchObject({
      MESSAGE: "kata image activated",
      KATA_SYSEXT_NAME: "kata-containers",
      KATA_SYSEXT_VERSION: "3.32.0",
      PRIORITY: "5",
      SYSLOG_IDENTIFIER: "kata-e2e",
      _SYSTEMD_UNIT: unit,
    });
  });

  it("waitForUnit follows a unit to active and back to inactive", async () => {
    const unit = "kata-e2e-sleeper.service";
    await c.check(["systemd-run", "--quiet", `--unit=${unit}`, "sleep", "300"]);
    await c.waitForUnit(unit, "active", 10_000);
    await c.check(["systemctl", "stop", unit]);
    await c.waitForUnit(unit, "inactive", 10_000);
    await expect(c.waitForUnit("kata-e2e-never.service", "active", 300)).rejects.toThrow(/wanted "active"/);
  });

  it("allowBusName lets root own a name on the container's real system bus", async () => {
    const script = `import dbus from "${REPO}/node_modules/dbus-next/index.js";
const bus = dbus.systemBus();
try { console.log("owned", await bus.requestName(process.argv[2], 0)); }
catch (err) { console.log("denied", err.type); }
bus.disconnect();
`;
    await c.writeFile("/run/kata-e2e/own-name.mjs", script);
    // unix:socket= makes dbus-next use node:net; its default (usocket, for unix:path=) breaks on Node 24.
    const env = { DBUS_SYSTEM_BUS_ADDRESS: "unix:socket=/run/dbus/system_bus_socket" };
    const own = () => c.check([process.execPath, "/run/kata-e2e/own-name.mjs", "com.coreos.update1"], { env });
    expect((await own()).trim()).toBe("denied org.freedesktop.DBus.Error.AccessDenied");
    await allowBusName(c, "com.coreos.update1");
    expect((await own()).trim()).toBe("owned 1"); // DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER
  });

  it("powers off cleanly and leaves nothing behind", async () => {
    const leader = c.leaderPid;
    const result = await c.poweroff();
    timings.firstPoweroffMs = result.ms;
    expect(result.clean).toBe(true);
    expect(isRunning(leader)).toBe(false);
    expect(await c.poweroff()).toBe(result); // idempotent
  });

  it(
    "a second boot with the same /etc merges the linked image at boot (systemd-sysext.service)",
    async () => {
      c = await bootContainer({
        ...bootOptions(),
        etcFiles: {
          "systemd/system/sysinit.target.wants/systemd-sysext.service": {
            symlink: "/usr/lib/systemd/system/systemd-sysext.service",
          },
        },
      });
      timings.secondBootMs = c.bootMs;
      expect(await c.check(["readlink", LINK])).toBe(`${STORE}/${IMAGE}\n`); // kept from the first boot
      await c.waitForUnit("systemd-sysext.service", "active", 10_000);
      expect(await c.check(["cat", "/usr/share/kata-containers/VERSION"])).toBe("3.32.0\n");
      const result = await c.poweroff();
      timings.secondPoweroffMs = result.ms;
      expect(result.clean).toBe(true);
    },
    BOOT_TIMEOUT_MS,
  );
});

describe.skipIf(skip)("nspawn harness: failures and leftovers", () => {
  it(
    "a container that cannot start fails boot with its console log and leaves nothing running",
    async () => {
      const name = `kata-e2e-${process.pid}-broken`;
      const logDir = mkdtempSync(join(tmpdir(), "kata-e2e-log-"));
      const log = join(logDir, "console.log");
      const missing = join(logDir, "no-such-folder");
      try {
        const boot = bootContainer({ name, log, binds: [{ host: missing, container: "/srv/x" }] });
        await expect(boot).rejects.toThrow(missing); // nspawn's own complaint, taken from the console log
        expect(readFileSync(log, "utf8")).toContain(missing);
        expect(nspawnProcesses(name)).toEqual([]);
        expect(readdirSync(tmpdir()).filter((entry) => entry.startsWith(`${name}-`))).toEqual([]);
      } finally {
        rmSync(logDir, { recursive: true, force: true });
      }
    },
    BOOT_TIMEOUT_MS,
  );

  it(
    "reaps a container whose test process was killed before it could clean up",
    async () => {
      const logDir = mkdtempSync(join(tmpdir(), "kata-e2e-log-"));
      try {
        const child = spawn(
          process.execPath,
          ["--input-type=module", "-e", ORPHAN_SCRIPT, join(logDir, "orphan.log")],
          {
            stdio: ["ignore", "pipe", "inherit"],
          },
        );
        const exited = once(child, "exit");
        const [first] = (await Promise.race([once(child.stdout, "data"), exited])) as unknown[];
        expect(Buffer.isBuffer(first), "the orphan's test process failed to boot its container").toBe(true);
        const leader = Number(String(first).trim());
        expect(leader).toBeGreaterThan(1);
        child.kill("SIGKILL"); // no exit hook runs: the container stays behind
        await exited;
        expect(isRunning(leader)).toBe(true);

        const next = await bootContainer();
        try {
          expect(isRunning(leader)).toBe(false);
          expect(nspawnProcesses(`kata-e2e-${child.pid}-1`)).toEqual([]);
          expect(readdirSync(tmpdir()).filter((entry) => entry.startsWith(`kata-e2e-${child.pid}-1-`))).toEqual([]);
        } finally {
          expect((await next.poweroff()).clean).toBe(true);
        }
      } finally {
        rmSync(logDir, { recursive: true, force: true });
      }
    },
    BOOT_TIMEOUT_MS,
  );
});

const ORPHAN_SCRIPT = `
import { bootContainer } from ${JSON.stringify(join(REPO, "test/helpers/nspawn.ts"))};
const c = await bootContainer({ loopDevices: true, log: process.argv[1] });
console.log(c.leaderPid);
setInterval(() => {}, 1000);
`;

/** PIDs of systemd-nspawn processes running a container of that name. */
function nspawnProcesses(name: string): number[] {
  return processes().filter((pid) => {
    const argv = readProc(`/proc/${pid}/cmdline`).split("\0");
    return argv[0]?.endsWith("systemd-nspawn") && argv[argv.indexOf("-M") + 1] === name;
  });
}
