import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MessageId } from "../../src/log/logger.ts";
import {
  CHECKOUT,
  CONTAINER_NODE,
  checkoutBinds,
  flatcarUsr,
  kataPayload,
  projectUnits,
  settled,
  statusIn,
  unmountUsr,
} from "../helpers/e2e-daemon.ts";
import { buildImage } from "../helpers/images.ts";
import { skipWithout, unless } from "../helpers/needs.ts";
import { freePort } from "../helpers/net.ts";
import {
  allowBusName,
  bootContainer,
  type Container,
  type EtcEntry,
  type JournalEntry,
  nspawnUnavailableReason,
} from "../helpers/nspawn.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../helpers/release-server.ts";

const skip = skipWithout(nspawnUnavailableReason(), "the e2e daemon test");
// The container's /usr is this machine's: containerd runs in it only where the machine has it (Debian's package).
const HAS_CONTAINERD = !skipWithout(
  unless(existsSync("/usr/bin/containerd"), "no /usr/bin/containerd (Debian package containerd)"),
  "the e2e daemon test's containerd checks",
);

const NODE = CONTAINER_NODE;
const STORE = "/var/lib/kata-sysextd/images";
const LINK = "/etc/extensions/kata-containers.raw";
const image = (version: string) => `${STORE}/kata-containers-${version}-x86-64.raw`;
const OLD_OS = "4593.2.5";
const NEW_OS = "4650.0.0";
/** A release the policy gives no Kata version: every Kata here needs Flatcar < 5000. */
const UNSUPPORTED_OS = "5000.0.0";
const UPDATE_ENGINE_UNIT = "e2e-update-engine.service";
const DAEMON_UNIT = "kata-sysextd.service";
const BOOT_UNIT = "kata-sysextd-boot.service";
const SANDBOX_UNIT = "e2e-kata-sandbox.service";
// Generous: a boot waits while another test file's container runs (one container at a time).
const BOOT_TIMEOUT_MS = 240_000;
const STEP_TIMEOUT_MS = 60_000;

describe.skipIf(skip)("kata-sysextd under real systemd (systemd-nspawn)", () => {
  const started = Date.now();
  const timings: Record<string, number> = {};
  const mounts: string[] = [];
  let host = "";
  let server: ReleaseServer | undefined;
  let port = 0;
  let c: Container;

  /** The container's /usr with this Flatcar release (test/helpers/e2e-daemon.ts says why it is an overlay). */
  const usrFor = (versionId: string): string => {
    const target = flatcarUsr(host, versionId, `usr-${mounts.length}`);
    mounts.push(target);
    return target;
  };

  /**
   * Boots with the given Flatcar release; the same etcDir and state folder make every boot after the first a
   * reboot. `kvm` binds /dev/kvm where the machine has it; without it the preflight fails and the host is degraded.
   */
  const boot = async (
    versionId: string,
    { kvm, etcFiles = {} }: { kvm: boolean; etcFiles?: Record<string, EtcEntry> },
  ): Promise<Container> => {
    // A test that failed before its poweroff must not leave a machine running on the same /etc and store.
    await c?.dispose();
    const container = await bootContainer({
      etcFiles,
      loopDevices: true,
      kvm: kvm && existsSync("/dev/kvm"),
      etcDir: join(host, "etc"),
      binds: [
        { host: usrFor(versionId), container: "/usr", readOnly: true },
        ...checkoutBinds(),
        // The store and state survive a reboot; the rest of the volatile /var does not.
        { host: join(host, "state"), container: "/var/lib/kata-sysextd" },
      ],
      bootTimeoutMs: 60_000,
    });
    if (process.env.KATA_E2E_DEBUG) console.error(`kata-sysextd e2e: ${container.debugCommand}`);
    return container;
  };

  const sh = (argv: string[]) => c.check(argv);
  const { status, statusUntil } = statusIn<StatusDoc>(
    () => c,
    () => port,
    DAEMON_UNIT,
    STEP_TIMEOUT_MS,
  );
  const readyz = async () =>
    (await sh(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", `http://127.0.0.1:${port}/readyz`])).trim();
  const unitProperty = async (unit: string, property: string) =>
    (await sh(["systemctl", "show", "-P", property, "--", unit])).trim();
  const journalWith = async (unit: string, messageId: string): Promise<JournalEntry[]> =>
    (await c.journal(unit)).filter((e) => e.MESSAGE_ID === messageId);

  /** The daemon's configuration; `policy` adds lines to [policy]. */
  const daemonConfig = (policy: string[] = []): string =>
    [
      "[source]",
      `url = "${server?.url}"`,
      "[policy]",
      'versions = ">=3.21.0"',
      "constraints = [",
      `  { kata = ">=3.33.0", flatcar = ">=${NEW_OS}", reason = "3.33 needs the newer Flatcar kernel" },`,
      `  { kata = ">=3.0.0", flatcar = "<${UNSUPPORTED_OS}", reason = "Kata 3 does not run on Flatcar 5000" },`,
      "]",
      ...policy,
      "[api]",
      `listen = "127.0.0.1:${port}"`,
      "[containerd]",
      'base_config = "/etc/containerd/config.toml"',
      // runc cannot start containers inside nspawn; test/integration/canary runs the canary outside.
      "[health]",
      "canary = false",
      "",
    ].join("\n");

  beforeAll(async () => {
    host = mkdtempSync(join(tmpdir(), "kata-e2e-daemon-"));
    const release = join(host, "release");
    mkdirSync(release);
    mkdirSync(join(host, "state"));
    await publishRelease(release, {
      images: ["3.32.0", "3.33.0"].map((version) => ({
        version,
        content: buildImage({ version, files: kataPayload(version) }, join(host, "build", `${version}.raw`)),
      })),
    });
    server = await startReleaseServer(release);
    port = await freePort();

    const etcFiles: Record<string, EtcEntry> = {
      ...projectUnits({ [DAEMON_UNIT]: "", [BOOT_UNIT]: " boot" }),
      "systemd/system/sysinit.target.wants/systemd-sysext.service": {
        symlink: "/usr/lib/systemd/system/systemd-sysext.service",
      },
      // Flatcar's containerd.service takes its configuration from $CONTAINERD_CONFIG; Debian's does not, so the
      // container's containerd gets Flatcar's ExecStart (the drop-in kata-sysextd writes sorts after this one).
      "systemd/system/containerd.service.d/10-flatcar.conf":
        "[Service]\nEnvironment=CONTAINERD_CONFIG=/etc/containerd/config.toml\nExecStart=\nExecStart=/usr/bin/containerd --config $CONTAINERD_CONFIG\n",
      "containerd/config.toml":
        'version = 2\n\n[plugins."io.containerd.grpc.v1.cri".containerd]\nsnapshotter = "native"\n',
      "kata-sysextd/config.toml": daemonConfig(),
    };
    // The first machine has no /dev/kvm: a degraded host (preflight failing), which must stay degraded and
    // still manage its extension; the reboots get /dev/kvm where this machine has it.
    c = await boot(OLD_OS, { kvm: false, etcFiles });
    timings.firstBootMs = c.bootMs;
  }, BOOT_TIMEOUT_MS);

  afterAll(async () => {
    await c?.dispose();
    await server?.close();
    for (const target of mounts) unmountUsr(target);
    if (host) rmSync(host, { recursive: true, force: true });
    timings.totalMs = Date.now() - started;
    console.log(`e2e daemon timings: ${JSON.stringify(timings)}`);
  });

  it(
    "runs the daemon as its sandboxed Type=notify unit: READY, then STATUS= lines",
    async () => {
      await expectNothingFailed();
      await c.waitForUnit(DAEMON_UNIT, "active", STEP_TIMEOUT_MS);
      const doc = await statusUntil((d) => d.lastReconcile !== null && settled(d));
      expect(doc.extension.active).toBe("3.32.0");
      expect(doc.state).toBe("degraded"); // no /dev/kvm in this machine
      expect(await unitProperty(DAEMON_UNIT, "StatusText")).toBe("degraded; kata 3.32.0 merged");
      const shown = (await c.exec(["systemctl", "status", "--no-pager", DAEMON_UNIT])).stdout;
      expect(shown).toContain('Status: "degraded; kata 3.32.0 merged"');
      expect(await unitProperty(DAEMON_UNIT, "NRestarts")).toBe("0");
      // WatchdogSec= is on and pinged: systemd moved the watchdog timestamp after READY=1 made the unit active.
      expect(await unitProperty(DAEMON_UNIT, "WatchdogUSec")).toBe("1min");
      const monotonic = async (property: string) => Number(await unitProperty(DAEMON_UNIT, property));
      expect(await monotonic("WatchdogTimestampMonotonic")).toBeGreaterThanOrEqual(
        await monotonic("ActiveEnterTimestampMonotonic"),
      );
      // The unit's sandbox is the one in units/, in force: no capabilities at all, a read-only system.
      expect(await unitProperty(DAEMON_UNIT, "ProtectSystem")).toBe("strict");
      expect(await unitProperty(DAEMON_UNIT, "CapabilityBoundingSet")).toBe("");
      const mainPid = await unitProperty(DAEMON_UNIT, "MainPID");
      expect(await sh(["grep", "^CapEff:", `/proc/${mainPid}/status`])).toMatch(/^CapEff:\s+0+\n$/);
      expect(await sh(["readlink", `/proc/${mainPid}/exe`])).toBe(`${NODE}\n`);
      // /run is writable for the reboot sentinel only: what other services keep under it stays read-only.
      const inSandbox = (path: string) =>
        c.exec(["nsenter", "-t", mainPid, "-m", "sh", "-c", `touch ${path} && rm ${path}`]);
      expect((await inSandbox("/run/.kata-sysextd-probe")).exitCode).toBe(0);
      for (const dir of ["/run/systemd", "/run/dbus", "/run/containerd"]) {
        expect((await inSandbox(`${dir}/.kata-sysextd-probe`)).stderr).toMatch(/Read-only file system/);
      }
      expect((await inSandbox("/etc/.kata-sysextd-probe")).stderr).toMatch(/Read-only file system/);
    },
    2 * STEP_TIMEOUT_MS,
  );

  it("links the image into the store and the real systemd-sysext merges it", async () => {
    // The machine's /etc started without extensions/: the unit created it before its sandbox was set up.
    expect(await sh(["readlink", "-f", LINK])).toBe(`${image("3.32.0")}\n`);
    expect(await sh(["systemd-sysext", "list"])).toMatch(
      /kata-containers\s+raw\s+\/etc\/extensions\/kata-containers\.raw/,
    );
    const merged = JSON.parse(await sh(["systemd-sysext", "status", "--json=short"])) as SysextStatus[];
    expect(merged.find((h) => h.hierarchy === "/usr")?.extensions).toContain("kata-containers");
    expect(await sh(["cat", "/usr/share/kata-containers/VERSION"])).toBe("3.32.0\n");
    expect(await sh(["cat", "/usr/lib/extension-release.d/extension-release.kata-containers"])).toContain("ID=_any");
    expect(await sh(["/opt/kata/bin/containerd-shim-kata-v2"])).toBe("kata-shim 3.32.0\n");
    // Merged by systemd-sysext.service in the host's namespace, not in the daemon's private one.
    expect(await unitProperty("systemd-sysext.service", "ActiveState")).toBe("active");
    expect(await sh(["grep", "^ID=", "/usr/lib/os-release"])).toBe("ID=flatcar\n");
  });

  it("answers /status per docs/interface.md", async () => {
    const doc = await status();
    expect(doc.daemon.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(new Date(doc.daemon.startedAt).toISOString()).toBe(doc.daemon.startedAt);
    expect(doc.host).toEqual({ id: "flatcar", versionId: OLD_OS, sysextLevel: "1.0", arch: "x86-64" });
    expect(doc.extension).toMatchObject({
      name: "kata-containers",
      active: "3.32.0",
      merged: true,
      image: image("3.32.0"),
    });
    expect(doc.nextBoot).toBeNull();
    expect(doc.lastReconcile).toMatchObject({ result: "ok", error: null });
    // Degraded, not failed: the extension is fine, the host cannot run VMs (no /dev/kvm here).
    expect(doc.state).toBe("degraded");
    expect(doc.preflight.ok).toBe(false);
    expect(doc.preflight.checks.find((check) => check.id === "kvm-usable")?.status).toBe("fail");
    expect(typeof doc.preflight.ok).toBe("boolean");
    expect(doc.preflight.checks.find((check) => check.id === "hypervisor-binary")?.status).toBe("pass");
    // No handler can run without /dev/kvm, so none is registered, and containerd serves no Kata runtime.
    expect(doc.preflight.checks.find((check) => check.id === "containerd-handler")).toMatchObject({
      status: HAS_CONTAINERD ? "fail" : expect.any(String),
      detail: HAS_CONTAINERD ? expect.stringContaining("which registers no") : expect.any(String),
    });
    expect(doc.containerd?.handlers).toContainEqual(
      expect.objectContaining({ name: "kata-clh", registered: false, reason: "no /dev/kvm" }),
    );
    // One verdict per configured hypervisor, each naming the failed host check.
    expect(doc.preflight.hypervisors.length).toBeGreaterThan(0);
    for (const h of doc.preflight.hypervisors) {
      expect(h).toMatchObject({ ok: false, verdict: expect.stringMatching(/^\w+: cannot run Kata: .*kvm-usable/) });
    }
    expect(await readyz()).toBe("503");
  });

  it.skipIf(!HAS_CONTAINERD)(
    "points the container's real containerd at the merged file, without the handlers this host cannot run",
    async () => {
      // This machine has no /dev/kvm: no handler can run, so none is offered (test/e2e/containerd-units.test.ts
      // registers them where /dev/kvm is bound), and the journal says why for each.
      const config = await sh(["cat", "/etc/kata-sysextd/containerd.toml"]);
      expect(config).not.toContain("io.containerd.kata.v2");
      expect(config).toContain('snapshotter = "native"'); // the base configuration is kept
      await c.waitForUnit("containerd.service", "active", STEP_TIMEOUT_MS);
      const messages = (await c.journal(DAEMON_UNIT)).map((e) => e.MESSAGE);
      // The daemon says which configuration it built on and why, and that containerd loaded the handlers.
      expect(messages).toContainEqual(
        expect.stringMatching(
          /^containerd's Kata runtimes are merged into \/etc\/containerd\/config\.toml: .*\$CONTAINERD_CONFIG/,
        ),
      );
      expect(messages).toContain("runtime handler kata-clh is not registered: no /dev/kvm");
      expect(messages).toContainEqual(expect.stringMatching(/^containerd restarted with no Kata runtime handler/));
      await expectContainerdOnKataConfig();
    },
  );

  it("logs structured journal fields and the image-activated MESSAGE_ID", async () => {
    const [activated] = await journalWith(DAEMON_UNIT, MessageId.imageActivated);
    expect(activated).toMatchObject({
      _SYSTEMD_UNIT: DAEMON_UNIT,
      SYSLOG_IDENTIFIER: "kata-sysextd",
      PRIORITY: "5",
      KATA_SYSEXT_NAME: "kata-containers",
      KATA_SYSEXT_VERSION: "3.32.0",
      FLATCAR_VERSION_ID: OLD_OS,
    });
    expect(activated?.MESSAGE).toContain("kata-containers-3.32.0-x86-64.raw");
    // No update_engine on this machine yet: said once, with the bus name, and the daemon carries on.
    const absent = (await c.journal(DAEMON_UNIT)).filter((e) => String(e.MESSAGE).includes("is not on the system bus"));
    expect(absent).toHaveLength(1);
    expect(absent[0]).toMatchObject({ DBUS_NAME: "com.coreos.update1", PRIORITY: "5" });
  });

  it(
    "notices /run/reboot-required",
    async () => {
      await sh(["touch", "/run/reboot-required"]);
      const wanted = "/run/reboot-required appeared: an OS update waits for a reboot";
      const until = Date.now() + STEP_TIMEOUT_MS;
      let messages: unknown[] = [];
      while (Date.now() < until && !messages.includes(wanted)) {
        messages = (await c.journal(DAEMON_UNIT)).map((e) => e.MESSAGE);
        await sleep(100);
      }
      expect(messages).toContain(wanted);
      await sh(["rm", "/run/reboot-required"]);
    },
    STEP_TIMEOUT_MS,
  );

  it("journalctl -x explains the record with the shipped catalog", async () => {
    await sh(["journalctl", "--update-catalog"]);
    const explained = await sh(["journalctl", "-x", "--no-pager", `MESSAGE_ID=${MessageId.imageActivated}`]);
    expect(explained).toContain("Subject: Kata Containers extension 3.32.0 activated");
  });

  it("kata-sysextctl reads the status and asks for a pass over the daemon's root-only socket", async () => {
    const ctl = (...args: string[]) => sh([NODE, join(CHECKOUT, "bin/kata-sysextctl.js"), ...args]);
    expect(await sh(["stat", "-c", "%F %a %U", "/run/kata-sysextd/api.sock"])).toBe("socket 600 root\n");
    const shown = JSON.parse(await ctl("status", "--json")) as StatusDoc;
    expect(shown.extension).toMatchObject({ active: "3.32.0", merged: true });
    expect(await ctl("refresh")).toContain("3.32.0");
    expect((await status()).lastReconcile?.result).toBe("ok");
  });

  it(
    "systemctl reload re-reads the configuration without a restart",
    async () => {
      const pid = await unitProperty(DAEMON_UNIT, "MainPID");
      await sh(["systemctl", "reload", DAEMON_UNIT]);
      const until = Date.now() + STEP_TIMEOUT_MS;
      let messages: unknown[] = [];
      // The configuration did not change: the reload is acknowledged, and no pass is started for nothing.
      while (Date.now() < until && !messages.includes("configuration reloaded (unchanged)")) {
        messages = (await c.journal(DAEMON_UNIT)).map((e) => e.MESSAGE);
        await sleep(100);
      }
      expect(messages).toContain("configuration reloaded (unchanged)");
      expect(await unitProperty(DAEMON_UNIT, "MainPID")).toBe(pid);
      expect(await unitProperty(DAEMON_UNIT, "ActiveState")).toBe("active");
    },
    STEP_TIMEOUT_MS,
  );

  it(
    "notices when someone removes the active link, says so, and puts it back",
    async () => {
      const activatedBefore = (await journalWith(DAEMON_UNIT, MessageId.imageActivated)).length;
      const passBefore = (await status()).lastReconcile?.at;
      await sh(["rm", LINK]);
      // Seen through the unit's own mount namespace (inotify on the same directory); the next pass relinks.
      const doc = await statusUntil((d) => d.lastReconcile?.at !== passBefore && settled(d));
      expect(doc.extension).toMatchObject({ active: "3.32.0", merged: true });
      expect(doc.lastReconcile?.result).toBe("ok");
      expect(await sh(["readlink", "-f", LINK])).toBe(`${image("3.32.0")}\n`);
      const messages = (await c.journal(DAEMON_UNIT)).map((e) => e.MESSAGE);
      expect(messages).toContain(`${LINK} changed outside kata-sysextd; reconciling`);
      expect((await journalWith(DAEMON_UNIT, MessageId.imageActivated)).length).toBe(activatedBefore + 1);
      expect(await sh(["cat", "/usr/share/kata-containers/VERSION"])).toBe("3.32.0\n");
    },
    STEP_TIMEOUT_MS,
  );

  /** update_engine (the stand-in) on the container's real system bus, as a unit, announcing `version`. */
  const updateEngineNeedsReboot = async (version: string): Promise<void> => {
    await c.exec(["systemctl", "stop", UPDATE_ENGINE_UNIT]);
    await sh([
      "systemd-run",
      "--quiet",
      `--unit=${UPDATE_ENGINE_UNIT}`,
      NODE,
      join(CHECKOUT, "test/helpers/fake-update-engine.ts"),
      "--emit",
      "UPDATE_STATUS_UPDATED_NEED_REBOOT",
      "--version",
      version,
    ]);
  };

  it(
    "says loudly when no Kata image fits the release update_engine will reboot into",
    async () => {
      await allowBusName(c, "com.coreos.update1");
      const readyBefore = await readyz();
      await updateEngineNeedsReboot(UNSUPPORTED_OS);
      const doc = await statusUntil((d) => d.nextBoot?.flatcarVersion === UNSUPPORTED_OS && settled(d));
      expect(doc.nextBoot).toMatchObject({ flatcarVersion: UNSUPPORTED_OS, kata: null, staged: false });
      expect(doc.nextBoot?.reason).toContain("no acceptable Kata version");
      expect(doc.extension).toMatchObject({ active: "3.32.0", merged: true });
      expect(await readyz()).toBe(readyBefore);
      const [loud] = await journalWith(DAEMON_UNIT, MessageId.incompatibleNextOs);
      expect(loud).toMatchObject({
        PRIORITY: "4",
        FLATCAR_NEXT_VERSION: UNSUPPORTED_OS,
        ERROR_CODE: "no-compatible-version",
      });
    },
    STEP_TIMEOUT_MS,
  );

  it(
    "stages the image for the next Flatcar release when update_engine on the real system bus needs a reboot",
    async () => {
      await updateEngineNeedsReboot(NEW_OS);
      const doc = await statusUntil((d) => d.nextBoot?.staged === true);
      expect(doc.nextBoot).toEqual({ flatcarVersion: NEW_OS, kata: "3.33.0", staged: true, reason: null, skipped: [] });
      expect(doc.state).toBe("degraded"); // staging is no pass: the host's verdict stays
      expect((await c.exec(["test", "-f", image("3.33.0")])).exitCode).toBe(0);
      // Design (b): staging fetches and records; the running overlay and the link stay on 3.32.0 until the reboot.
      expect(await sh(["readlink", "-f", LINK])).toBe(`${image("3.32.0")}\n`);
      expect(await sh(["cat", "/usr/share/kata-containers/VERSION"])).toBe("3.32.0\n");
      const [staged] = await journalWith(DAEMON_UNIT, MessageId.nextBootStaged);
      expect(staged).toMatchObject({
        KATA_SYSEXT_VERSION: "3.33.0",
        FLATCAR_VERSION_ID: OLD_OS,
        FLATCAR_NEXT_VERSION: NEW_OS,
      });
    },
    STEP_TIMEOUT_MS,
  );

  it("systemctl stop stops the daemon cleanly", async () => {
    await sh(["systemctl", "stop", UPDATE_ENGINE_UNIT]);
    await sh(["systemctl", "stop", DAEMON_UNIT]);
    expect(await unitProperty(DAEMON_UNIT, "ActiveState")).toBe("inactive");
    expect(await unitProperty(DAEMON_UNIT, "Result")).toBe("success");
    expect(await unitProperty(DAEMON_UNIT, "ExecMainStatus")).toBe("0");
    const messages = (await c.journal(DAEMON_UNIT)).map((e) => e.MESSAGE);
    expect(messages).toContain("SIGTERM: stopping");
    // What the boot unit will go by: the persisted next-boot record.
    const persisted = JSON.parse(readFileSync(join(host, "state/state.json"), "utf8")) as { nextBoot: unknown };
    expect(persisted.nextBoot).toMatchObject({
      flatcarVersion: NEW_OS,
      files: { "kata-containers": "kata-containers-3.33.0-x86-64.raw" },
      staged: true,
    });
    // Stopping the daemon leaves the host as it was: still linked and merged.
    expect(await sh(["cat", "/usr/share/kata-containers/VERSION"])).toBe("3.32.0\n");
    const off = await c.poweroff();
    expect(off.clean).toBe(true);
    timings.firstPoweroffMs = off.ms;
  });

  /**
   * A reboot into `versionId`: the boot unit (not the daemon) has `kata` linked and merged before containerd and
   * the daemon start, and the daemon then reports it for that release. Returns the daemon's first settled status.
   */
  const rebootExpecting = async (versionId: string, kata: string): Promise<StatusDoc> => {
    c = await boot(versionId, { kvm: true });
    await expectNothingFailed();
    expect(await unitProperty(BOOT_UNIT, "Result")).toBe("success");
    expect(await unitProperty(BOOT_UNIT, "ActiveState")).toBe("active");
    // Node's compile cache outlives the units' private /tmp: the next boot step starts from it (CacheDirectory=).
    expect(await sh(["find", "/var/cache/kata-sysextd/node-compile-cache", "-type", "f", "-size", "+0"])).not.toBe("");
    expect(await sh(["readlink", "-f", LINK]), await bootStory()).toBe(`${image(kata)}\n`);
    expect(await sh(["cat", "/usr/share/kata-containers/VERSION"])).toBe(`${kata}\n`);
    expect(await sh(["grep", "^VERSION_ID=", "/usr/lib/os-release"])).toBe(`VERSION_ID=${versionId}\n`);
    const [activated] = await journalWith(BOOT_UNIT, MessageId.imageActivated);
    expect(activated).toMatchObject({
      _SYSTEMD_UNIT: BOOT_UNIT,
      KATA_SYSEXT_VERSION: kata,
      FLATCAR_VERSION_ID: versionId,
    });
    await assertBootOrder();
    if (HAS_CONTAINERD) await expectContainerdOnKataConfig();
    await c.waitForUnit(DAEMON_UNIT, "active", STEP_TIMEOUT_MS);
    const doc = await statusUntil((d) => d.lastReconcile !== null && settled(d));
    // Design (b) costs one extra merge at boot, and only one: the boot unit's; the daemon found nothing to redo.
    const sysextRuns = (await c.journal("systemd-sysext.service")).filter(
      (e) => e.JOB_TYPE === "start" && e.JOB_RESULT === "done",
    );
    expect(sysextRuns.length, await bootStory()).toBe(2);
    expect(doc.host.versionId).toBe(versionId);
    expect(await readyz()).toBe(doc.preflight.ok ? "200" : "503");
    expect(doc.extension).toMatchObject({ active: kata, merged: true });
    return doc;
  };

  it(
    "after the reboot into the new release, the boot unit merges the staged image before containerd starts",
    async () => {
      const doc = await rebootExpecting(NEW_OS, "3.33.0");
      timings.secondBootMs = c.bootMs;
      expect(doc.nextBoot).toBeNull(); // booted into it: nothing pending any more
      expect((await c.poweroff()).clean).toBe(true);
    },
    BOOT_TIMEOUT_MS,
  );

  it(
    "booting the old release again recovers: 3.32.0 linked and merged before containerd",
    async () => {
      // 3.33.0 needs Flatcar >= 4650.0.0 by policy: the boot step goes back to the newest image that qualifies.
      await rebootExpecting(OLD_OS, "3.32.0");
      timings.thirdBootMs = c.bootMs;
      // Rolling back to the image before the boot step's switch (3.33.0) would merge, but the policy forbids it here.
      const rollback = await c.exec([NODE, join(CHECKOUT, "bin/kata-sysextctl.js"), "rollback"]);
      expect(rollback.exitCode).toBe(1);
      expect(`${rollback.stdout}${rollback.stderr}`).toContain("3.33 needs the newer Flatcar kernel");
      // Refused, nothing changed: the host is not reported worse over it.
      expect((await status()).lastReconcile?.result).toBe("ok");
      expect(await sh(["readlink", "-f", LINK])).toBe(`${image("3.32.0")}\n`);
      expect(await sh(["cat", "/usr/share/kata-containers/VERSION"])).toBe("3.32.0\n");
    },
    BOOT_TIMEOUT_MS,
  );

  it(
    "asks for a reboot in /run/reboot-required while a sandbox holds an activation back; the boot unit removes it after relinking",
    async () => {
      await c.waitForUnit(DAEMON_UNIT, "active", STEP_TIMEOUT_MS);
      // policy.activation = "next-boot", taken by the running daemon at `systemctl reload`.
      writeFileSync(join(host, "etc/kata-sysextd/config.toml"), daemonConfig(['activation = "next-boot"']));
      await sh(["systemctl", "reload", DAEMON_UNIT]);
      await until("the reload", async () => (await daemonMessages()).includes("configuration reloaded"));
      // A stand-in Kata sandbox: a process whose argv[0] is containerd-shim-kata-v2, as a unit of its own.
      await sh(["sh", "-c", "mkdir -p /run/e2e-sandbox && cp /usr/bin/sleep /run/e2e-sandbox/containerd-shim-kata-v2"]);
      await sh([
        "systemd-run",
        "--quiet",
        `--unit=${SANDBOX_UNIT}`,
        "/run/e2e-sandbox/containerd-shim-kata-v2",
        "infinity",
      ]);
      // A newer Kata for this release appears at the source.
      await publishRelease(join(host, "release"), {
        images: ["3.32.0", "3.32.1", "3.33.0"].map((version) => ({
          version,
          content: existsSync(join(host, "build", `${version}.raw`))
            ? join(host, "build", `${version}.raw`)
            : buildImage({ version, files: kataPayload(version) }, join(host, "build", `${version}.raw`)),
        })),
      });
      const refresh = await c.exec([NODE, join(CHECKOUT, "bin/kata-sysextctl.js"), "refresh"]);
      expect(refresh.exitCode, `${refresh.stdout}${refresh.stderr}`).toBe(0);

      const line =
        'kata-sysextd: Kata 3.32.1 is staged and activates at the next boot (policy.activation = "next-boot")\n';
      expect(await sh(["cat", "/run/reboot-required"])).toBe(line);
      expect(await sh(["readlink", "-f", LINK])).toBe(`${image("3.32.0")}\n`);
      const doc = await status();
      expect(doc.lastReconcile?.result).toBe("deferred");
      expect(doc.reboot).toMatchObject({
        requested: true,
        reason: line.slice("kata-sysextd: ".length, -1),
        sentinel: { path: "/run/reboot-required", owner: "kata-sysextd" },
      });
      const metrics = await sh(["curl", "-s", `http://127.0.0.1:${port}/metrics`]);
      expect(metrics).toMatch(/^kata_sysextd_reboot_requested 1$/m);
      expect(metrics).toMatch(
        new RegExp(
          `^kata_sysextd_reboot_requested_since_seconds ${Math.floor(Date.parse(doc.reboot.since ?? "") / 1000)}$`,
          "m",
        ),
      );
      const [requested] = await journalWith(DAEMON_UNIT, MessageId.rebootRequested);
      expect(requested).toMatchObject({
        PRIORITY: "5",
        REBOOT_SENTINEL: "/run/reboot-required",
        REBOOT_SENTINEL_OWNER: "kata-sysextd",
      });

      // What the reboot does, without emptying /run (a real one would, and so hide whether the boot unit removes
      // a sentinel it wrote, as it must on a persistent path): the sandboxes end, and the boot unit runs again.
      await sh(["systemctl", "kill", "--signal=SIGKILL", SANDBOX_UNIT]);
      await sh(["systemctl", "stop", DAEMON_UNIT]);
      await sh(["systemctl", "restart", BOOT_UNIT]);
      expect(await unitProperty(BOOT_UNIT, "Result")).toBe("success");
      expect(await sh(["readlink", "-f", LINK])).toBe(`${image("3.32.1")}\n`);
      expect(await sh(["cat", "/usr/share/kata-containers/VERSION"])).toBe("3.32.1\n");
      expect((await c.exec(["test", "-e", "/run/reboot-required"])).exitCode).toBe(1);
      const bootMessages = (await c.journal(BOOT_UNIT)).map((e) => String(e.MESSAGE));
      const relinked = bootMessages.findIndex((m) => m.includes("activated kata-containers-3.32.1-x86-64.raw"));
      const withdrawn = bootMessages.findIndex(
        (m) => m.startsWith("reboot request withdrawn") && m.endsWith("removed /run/reboot-required"),
      );
      expect(relinked, bootMessages.join("\n")).toBeGreaterThanOrEqual(0);
      expect(withdrawn, bootMessages.join("\n")).toBeGreaterThan(relinked);
      expect((await c.poweroff()).clean).toBe(true);
    },
    BOOT_TIMEOUT_MS,
  );

  /** The daemon unit's journal messages. */
  async function daemonMessages(): Promise<unknown[]> {
    return (await c.journal(DAEMON_UNIT)).map((e) => e.MESSAGE);
  }

  async function until(what: string, check: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (await check()) return;
      await sleep(100);
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  /** containerd runs, started with the configuration that has the Kata runtimes merged in. */
  async function expectContainerdOnKataConfig(): Promise<void> {
    await c.waitForUnit("containerd.service", "active", STEP_TIMEOUT_MS);
    const pid = await unitProperty("containerd.service", "MainPID");
    expect((await sh(["cat", `/proc/${pid}/cmdline`])).split("\0")).toEqual([
      "/usr/bin/containerd",
      "--config",
      "/etc/kata-sysextd/containerd.toml",
      "",
    ]);
  }

  /** What this boot did, for a failure message: the units' journal and the state file the boot unit read. */
  async function bootStory(): Promise<string> {
    const units = ["systemd-sysext.service", BOOT_UNIT, DAEMON_UNIT].flatMap((u) => ["-u", u]);
    const journal = await c.exec(["journalctl", "-b", ...units, "--no-pager", "-o", "short-monotonic"]);
    return `${journal.stdout}\nstate.json: ${readFileSync(join(host, "state/state.json"), "utf8")}`;
  }

  /** No unit failed during boot; a failure quotes the failed units' own journal. */
  async function expectNothingFailed(): Promise<void> {
    const journals = await Promise.all(
      c.failedAtBoot.map(async (unit) => (await c.exec(["journalctl", "-u", unit, "--no-pager", "-n", "40"])).stdout),
    );
    expect(c.failedAtBoot, journals.join("\n")).toEqual([]);
  }

  /** The boot unit finished before containerd and the daemon started (systemd's own timestamps, not ours). */
  async function assertBootOrder(): Promise<void> {
    const monotonic = async (unit: string, property: string) => Number(await unitProperty(unit, property));
    const bootDone = await monotonic(BOOT_UNIT, "ExecMainExitTimestampMonotonic");
    expect(bootDone).toBeGreaterThan(0);
    if (HAS_CONTAINERD) {
      expect(await monotonic("containerd.service", "ExecMainStartTimestampMonotonic")).toBeGreaterThan(bootDone);
    }
    expect(await monotonic(DAEMON_UNIT, "ExecMainStartTimestampMonotonic")).toBeGreaterThan(bootDone);
  }
});

interface StatusDoc {
  daemon: { version: string; startedAt: string };
  host: { id: string | null; versionId: string | null; sysextLevel: string | null; arch: string };
  extension: { name: string; active: string | null; merged: boolean; image: string | null };
  nextBoot: { flatcarVersion: string; kata: string | null; staged: boolean; reason: string | null } | null;
  reboot: {
    requested: boolean;
    reason: string | null;
    since: string | null;
    sentinel: { path: string; owner: string } | null;
  };
  preflight: {
    ok: boolean;
    failed: number;
    warnings: number;
    checks: { id: string; status: string }[];
    hypervisors: { name: string; ok: boolean; verdict: string }[];
  };
  lastReconcile: { at: string; result: string; error: string | null } | null;
  containerd: { handlers: { name: string; registered: boolean; reason: string | null }[] } | null;
  state: string;
}

interface SysextStatus {
  hierarchy: string;
  extensions: string[] | string;
}
