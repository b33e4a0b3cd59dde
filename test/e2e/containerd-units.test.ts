// The containerd registration against real systemd (nspawn) and the real containerd 1.6 running as
// containerd.service in it, for the unit shapes Flatcar documents: its own unit (CONTAINERD_CONFIG and
// `--config ${CONTAINERD_CONFIG}`), the cgroupfs drop-in, the operator's ExecStart override without --config, and
// an override that sorts after our drop-in (rolled back, with the reason). The registration runs from this
// process: it talks to the container's system bus and reads and writes the container's files through
// /proc/<its systemd>/root, which is what --root would resolve them under. Every result is checked against the
// running containerd process: its /proc/PID/cmdline and containerd's config dump of the file it names.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemClock } from "../../src/clock.ts";
import { containerdFiles } from "../../src/containerd/registration.ts";
import { containerdRegistration, type RuntimeRegistration } from "../../src/containerd/stage.ts";
import { createLogger } from "../../src/log/logger.ts";
import { hostPaths } from "../../src/paths.ts";
import { type Bus, createBus } from "../../src/systemd/bus.ts";
import { createSystemdManager, type SystemdManager } from "../../src/systemd/manager.ts";
import { buildPayload } from "../fixtures/preflight/hosts.ts";
import { scratch } from "../fixtures/preflight/toolchain.ts";
import { kataImage } from "../helpers/containerd.ts";
import { flatcarUsr, unmountUsr } from "../helpers/e2e-daemon.ts";
import { writeOsRelease } from "../helpers/images.ts";
import { skipWithout } from "../helpers/needs.ts";
import { bootContainer, type Container, nspawnUnavailableReason } from "../helpers/nspawn.ts";

const skip = skipWithout(nspawnUnavailableReason(), "the containerd unit test");

const D = "opt/kata/share/defaults/kata-containers";
const OURS = "/etc/kata-sysextd/containerd.toml";
const DROP_INS = "/etc/systemd/system/containerd.service.d";
const CONFIG = {
  baseConfig: "/usr/share/containerd/config.toml",
  configFile: OURS,
  unitDropIn: `${DROP_INS}/50-kata-sysextd.conf`,
};

/** Flatcar's containerd.service, in the lines that decide the configuration. */
const FLATCAR_UNIT = `[Unit]
Description=containerd container runtime
After=network.target
[Service]
Delegate=yes
Environment=CONTAINERD_CONFIG=/usr/share/containerd/config.toml
ExecStart=/usr/bin/containerd --config \${CONTAINERD_CONFIG}
KillMode=process
Restart=always
Type=notify
[Install]
WantedBy=multi-user.target
`;
/** Flatcar's two shipped configurations, told apart by the cgroup driver. */
const flatcarConfig = (systemdCgroup: boolean) => `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri".containerd]
snapshotter = "native"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
SystemdCgroup = ${systemdCgroup}
`;

const image = kataImage([`${D}/configuration-clh.toml`, `${D}/configuration-qemu.toml`]);
/** Registered: Cloud Hypervisor has /dev/kvm. Not: QEMU needs /dev/vhost-vsock, which the container lacks. */
const HANDLERS = ["kata", "kata-clh"];

describe.skipIf(skip)("containerd registration under real systemd and containerd 1.6", () => {
  let work = "";
  let usr = "";
  let c: Container;
  let bus: Bus;
  let manager: SystemdManager;
  let registration: RuntimeRegistration;
  const logged: string[] = [];

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "kata-ctd-units-"));
    const layer = join(work, "os-4593.2.5");
    writeOsRelease(layer);
    mkdirSync(join(layer, "usr/share/containerd"), { recursive: true });
    writeFileSync(join(layer, "usr/share/containerd/config.toml"), flatcarConfig(true));
    writeFileSync(join(layer, "usr/share/containerd/config-cgroupfs.toml"), flatcarConfig(false));
    usr = flatcarUsr(work, "4593.2.5");
    // A merged Kata payload: its configurations and (fake, real ELF) hypervisors, judged like real ones.
    const payload = buildPayload(join(work, "payload"), { hypervisors: ["qemu", "clh"] });
    c = await bootContainer({
      kvm: true,
      binds: [
        { host: usr, container: "/usr", readOnly: true },
        { host: join(payload, "opt"), container: "/opt", readOnly: true },
      ],
      etcFiles: {
        "systemd/system/containerd.service": FLATCAR_UNIT,
        "systemd/system/multi-user.target.wants/containerd.service": {
          symlink: "/etc/systemd/system/containerd.service",
        },
      },
      bootTimeoutMs: 240_000,
      // Other test files' containers run one at a time before ours.
      lockTimeoutMs: 480_000,
    });
    await c.waitForUnit("containerd.service", "active", 60_000);
    const root = `/proc/${c.leaderPid}/root`;
    const log = createLogger((_level, message) => logged.push(message), "debug");
    bus = createBus({
      address: `unix:path=${root}/run/dbus/system_bus_socket`,
      clock: systemClock,
      random: () => 0.5,
      log,
    });
    manager = await createSystemdManager(bus, log, systemClock, { confirmIntervalMs: 100 });
    const paths = hostPaths(root);
    registration = containerdRegistration({
      files: containerdFiles(paths, CONFIG),
      root,
      pinned: null,
      host: paths.host,
      systemd: manager,
      restart: true,
      log,
    });
  }, 780_000);

  afterAll(async () => {
    manager?.close();
    await bus?.close();
    await c?.dispose();
    if (usr) unmountUsr(usr);
    if (work) rmSync(work, { recursive: true, force: true });
    rmSync(scratch(), { recursive: true, force: true });
  });

  /** What the running containerd reads: its command line, and containerd's own dump of the file it names. */
  const running = async () => {
    const pid = (await c.check(["systemctl", "show", "-P", "MainPID", "containerd.service"])).trim();
    const argv = (await c.check(["cat", `/proc/${pid}/cmdline`])).split("\0").filter(Boolean);
    const dump = await c.check(["containerd", "--config", argv.at(-1) ?? "", "config", "dump"]);
    return { argv, dump };
  };
  const dropIn = (name: string, text: string) => c.writeFile(`${DROP_INS}/${name}`, `[Service]\n${text}\n`);
  const daemonReload = () => c.check(["systemctl", "daemon-reload"]);
  const expectHandlers = (dump: string) => {
    for (const name of HANDLERS) {
      expect(dump).toContain(`[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.${name}]`);
    }
    expect(dump).not.toContain("runtimes.kata-qemu]");
  };

  it("Flatcar's unit: merged into /usr/share/containerd/config.toml, selected through CONTAINERD_CONFIG", async () => {
    expect(await registration.ensure(image)).toBe(true);
    const { argv, dump } = await running();
    expect(argv).toEqual(["/usr/bin/containerd", "--config", OURS]);
    expectHandlers(dump);
    expect(dump).toContain("SystemdCgroup = true");
    expect(await c.check(["cat", CONFIG.unitDropIn])).toContain(`Environment=CONTAINERD_CONFIG=${OURS}\n`);
    expect(logged).toContainEqual(
      // Confirmed against the process systemd runs: before the registration it reads Flatcar's file.
      expect.stringMatching(
        /merged into \/usr\/share\/containerd\/config\.toml: .*reads \$CONTAINERD_CONFIG.*; the running containerd \(pid \d+\) reads \/usr\/share\/containerd\/config\.toml$/,
      ),
    );
    expect(registration.status()?.handlers).toEqual([
      expect.objectContaining({ name: "kata", registered: true, reason: null }),
      expect.objectContaining({ name: "kata-clh", registered: true, reason: null }),
      expect.objectContaining({
        name: "kata-qemu",
        registered: false,
        reason: expect.stringContaining("/dev/vhost-vsock"),
      }),
    ]);
    // Steady state: nothing to change, no restart.
    expect(await registration.ensure(image)).toBe(false);
  });

  it("the operator's cgroupfs CONTAINERD_CONFIG becomes the base, not ours replacing it", async () => {
    await dropIn("10-use-cgroupfs.conf", "Environment=CONTAINERD_CONFIG=/usr/share/containerd/config-cgroupfs.toml");
    await daemonReload();
    expect(await registration.ensure(image)).toBe(true);
    const { argv, dump } = await running();
    expect(argv).toEqual(["/usr/bin/containerd", "--config", OURS]);
    expectHandlers(dump);
    expect(dump).toContain("SystemdCgroup = false");
    expect(logged).toContainEqual(expect.stringMatching(/merged into \/usr\/share\/containerd\/config-cgroupfs\.toml/));
  });

  it("the operator's ExecStart without --config: their /etc/containerd/config.toml, their ExecStart plus --config", async () => {
    await c.check(["rm", `${DROP_INS}/10-use-cgroupfs.conf`]);
    await c.writeFile("/etc/containerd/config.toml", `${flatcarConfig(true)}oom_score = -321\n`);
    await dropIn("10-custom.conf", "ExecStart=\nExecStart=/usr/bin/containerd --log-level info");
    await daemonReload();
    expect(await registration.ensure(image)).toBe(true);
    const { argv, dump } = await running();
    expect(argv).toEqual(["/usr/bin/containerd", "--log-level", "info", "--config", OURS]);
    expectHandlers(dump);
    expect(dump).toContain("oom_score = -321");
    expect(logged).toContainEqual(
      expect.stringMatching(/merged into \/etc\/containerd\/config\.toml: .*has no --config/),
    );
  });

  it("an override that sorts after ours: not loaded, so rolled back with the reason", async () => {
    const before = await c.check(["cat", CONFIG.unitDropIn]);
    await dropIn("99-late.conf", "ExecStart=\nExecStart=/usr/bin/containerd --log-level warn");
    await daemonReload();
    await expect(registration.ensure(image)).rejects.toMatchObject({
      code: "containerd-failed",
      message: expect.stringMatching(
        /reads \/etc\/containerd\/config\.toml, not \/etc\/kata-sysextd\/containerd\.toml: .*99-late\.conf sorts after 50-kata-sysextd\.conf/,
      ),
    });
    expect(await c.check(["cat", CONFIG.unitDropIn])).toBe(before);
    await c.waitForUnit("containerd.service", "active", 30_000);
  });
});
