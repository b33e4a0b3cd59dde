// The registration's ensure (the last step of every pass) on a temp root, with the D-Bus adapter talking to a fake
// systemd that reports Flatcar's containerd.service: the default "kata" handler follows
// /etc/kata-containers/configuration.toml appearing and going away, and containerd is restarted exactly when the
// rendered configuration changed. What "containerd" loaded is confirmed as on a host: its /proc/PID/cmdline (a
// fixture under the root) and the real containerd's config dump of the file it names.
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { systemClock } from "../../../src/clock.ts";
import { containerdFiles } from "../../../src/containerd/registration.ts";
import { containerdRegistration } from "../../../src/containerd/stage.ts";
import { createLogger } from "../../../src/log/logger.ts";
import { hostPaths } from "../../../src/paths.ts";
import type { Bus } from "../../../src/systemd/bus.ts";
import { createSystemdManager, type SystemdManager } from "../../../src/systemd/manager.ts";
import { buildHost, buildPayload, PATHS } from "../../fixtures/preflight/hosts.ts";
import { scratch } from "../../fixtures/preflight/toolchain.ts";
import { kataImage, registeredConfigPaths } from "../../helpers/containerd.ts";
import { startTestBus, type TestBus } from "../../helpers/dbus.ts";
import { type FakeSystemd, startFakeSystemd } from "../../helpers/fake-systemd.ts";

/** A systemd variable reference, `${NAME}`, written so it is not read as a template placeholder. */
const braced = (name: string): string => `\${${name}}`;

const D = "opt/kata/share/defaults/kata-containers";
const CONFIG = {
  baseConfig: "/usr/share/containerd/config.toml",
  configFile: "/etc/kata-sysextd/containerd.toml",
  unitDropIn: "/etc/systemd/system/containerd.service.d/50-kata-sysextd.conf",
};
const quiet = createLogger(() => undefined);

let testBus: TestBus;
const roots: string[] = [];
let bus: Bus;
let systemd: FakeSystemd;
let manager: SystemdManager;

beforeEach(async () => {
  testBus = await startTestBus();
  systemd = await startFakeSystemd({ address: testBus.address });
  bus = testBus.client();
  manager = await createSystemdManager(bus, quiet, systemClock, { confirmIntervalMs: 50 });
});

afterAll(() => rmSync(scratch(), { recursive: true, force: true }));

afterEach(async () => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
  manager.close();
  await systemd.stop();
  await bus.close();
  await testBus.stop();
});

describe("ensure and the kata handler's configuration", () => {
  it("uses /etc/kata-containers/configuration.toml while it exists, restarting containerd only on a change", async () => {
    // A host whose KVM, devices and libc can run the fake hypervisors of a merged payload (qemu and clh).
    const root = buildHost({ containerdRunning: false, containerdConfig: null, unitDropIn: null });
    roots.push(root);
    buildPayload(root, { hypervisors: ["qemu", "clh"] });
    mkdirSync(join(root, "usr/share/containerd"), { recursive: true });
    writeFileSync(join(root, CONFIG.baseConfig), "version = 2\n");
    const paths = hostPaths(root);
    const runtime = containerdRegistration({
      files: containerdFiles(paths, CONFIG),
      root,
      pinned: null,
      host: paths.host,
      systemd: manager,
      restart: true,
      log: quiet,
    });
    systemd.addUnit("containerd.service", "active", "running");
    systemd.setService("containerd.service", {
      fragmentPath: "/usr/lib/systemd/system/containerd.service",
      argv: ["/usr/bin/containerd", "--config", braced("CONTAINERD_CONFIG")],
      environment: ["CONTAINERD_CONFIG=/usr/share/containerd/config.toml"],
      mainPid: 4242,
    });
    // The process containerd.service runs once our drop-in applies; its argv[0], the real binary, dumps the config.
    mkdirSync(join(root, "proc/4242"), { recursive: true });
    writeFileSync(join(root, "proc/4242/cmdline"), `/usr/bin/containerd\0--config\0${CONFIG.configFile}\0`);
    mkdirSync(join(root, "usr/bin"), { recursive: true });
    symlinkSync("/usr/bin/containerd", join(root, "usr/bin/containerd"));
    const active = kataImage([`${D}/configuration-clh.toml`, `${D}/configuration-qemu.toml`]);
    const restarts = () => systemd.calls.filter((c) => c === "RestartUnit containerd.service replace").length;
    const shipped = {
      kata: `/${D}/configuration-clh.toml`,
      "kata-clh": `/${D}/configuration-clh.toml`,
      "kata-qemu": `/${D}/configuration-qemu.toml`,
    };

    expect(await runtime.ensure(active)).toBe(true);
    expect(registeredConfigPaths(root)).toEqual(shipped);
    expect(restarts()).toBe(1);

    // The operator adds their own configuration: the next pass hands it to "kata", and only to "kata".
    mkdirSync(join(root, "etc/kata-containers"), { recursive: true });
    writeFileSync(join(root, "etc/kata-containers/configuration.toml"), `[hypervisor.qemu]\npath = "${PATHS.qemu}"\n`);
    expect(await runtime.ensure(active)).toBe(true);
    expect(registeredConfigPaths(root)).toEqual({ ...shipped, kata: "/etc/kata-containers/configuration.toml" });
    expect(restarts()).toBe(2);
    expect(systemd.calls.filter((c) => c === "Reload")).toHaveLength(2);

    // Editing the file changes no path: Kata reads it per sandbox, so containerd is left alone.
    writeFileSync(join(root, "etc/kata-containers/configuration.toml"), `[hypervisor.clh]\npath = "${PATHS.clh}"\n`);
    expect(await runtime.ensure(active)).toBe(false);
    expect(restarts()).toBe(2);

    // Removed again: back to the shipped file on the next pass.
    rmSync(join(root, "etc/kata-containers/configuration.toml"));
    expect(await runtime.ensure(active)).toBe(true);
    expect(registeredConfigPaths(root)).toEqual(shipped);
    expect(restarts()).toBe(3);
  });
});
