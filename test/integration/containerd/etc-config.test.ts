// The registration's ensure (the last step of every pass) on a temp root, with the D-Bus adapter talking to a fake
// systemd: the default "kata" handler follows /etc/kata-containers/configuration.toml appearing and going away,
// and containerd is restarted exactly when the rendered configuration changed.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { systemClock } from "../../../src/clock.ts";
import { containerdFiles } from "../../../src/containerd/registration.ts";
import { containerdRegistration } from "../../../src/containerd/stage.ts";
import { createLogger } from "../../../src/log/logger.ts";
import { hostPaths } from "../../../src/paths.ts";
import type { StoredImage } from "../../../src/store/store.ts";
import type { Bus } from "../../../src/systemd/bus.ts";
import { createSystemdManager, type SystemdManager } from "../../../src/systemd/manager.ts";
import { registeredConfigPaths } from "../../helpers/containerd.ts";
import { startTestBus, type TestBus } from "../../helpers/dbus.ts";
import { type FakeSystemd, startFakeSystemd } from "../../helpers/fake-systemd.ts";

const D = "opt/kata/share/defaults/kata-containers";
const CONFIG = {
  baseConfig: "/usr/share/containerd/config.toml",
  configFile: "/etc/kata-sysextd/containerd.toml",
  unitDropIn: "/etc/systemd/system/containerd.service.d/50-kata-sysextd.conf",
};
const quiet = createLogger(() => undefined);

/** An active image as the store records it; only what it ships under the defaults directory matters here. */
const image = (kataConfigs: string[]): StoredImage => ({
  file: "kata-containers-3.32.0-x86-64.raw",
  name: "kata-containers",
  version: "3.32.0",
  arch: "x86-64",
  sha256: "",
  bytes: 0,
  trust: "checksum",
  verifiedAt: "",
  extensionRelease: "ID=_any\n",
  kataConfigs,
  files: kataConfigs,
  path: "",
});

let testBus: TestBus;
let bus: Bus;
let systemd: FakeSystemd;
let manager: SystemdManager;

beforeEach(async () => {
  testBus = await startTestBus();
  systemd = await startFakeSystemd({ address: testBus.address });
  bus = testBus.client();
  manager = await createSystemdManager(bus, quiet, systemClock, { confirmIntervalMs: 50 });
});

afterEach(async () => {
  manager.close();
  await systemd.stop();
  await bus.close();
  await testBus.stop();
});

describe("ensure and the kata handler's configuration", () => {
  it("uses /etc/kata-containers/configuration.toml while it exists, restarting containerd only on a change", async () => {
    const root = mkdtempSync(join(tmpdir(), "kata-etc-config-"));
    mkdirSync(join(root, "usr/share/containerd"), { recursive: true });
    writeFileSync(join(root, CONFIG.baseConfig), "version = 2\n");
    const paths = hostPaths(root);
    const runtime = containerdRegistration({
      files: containerdFiles(paths, CONFIG),
      host: paths.host,
      systemd: manager,
      restart: true,
      log: quiet,
    });
    systemd.addUnit("containerd.service", "active", "running");
    const active = image([`${D}/configuration-clh.toml`, `${D}/configuration-qemu.toml`]);
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
    writeFileSync(join(root, "etc/kata-containers/configuration.toml"), "[hypervisor.qemu]\n");
    expect(await runtime.ensure(active)).toBe(true);
    expect(registeredConfigPaths(root)).toEqual({ ...shipped, kata: "/etc/kata-containers/configuration.toml" });
    expect(restarts()).toBe(2);
    expect(systemd.calls.filter((c) => c === "Reload")).toHaveLength(2);

    // Editing the file changes no path: Kata reads it per sandbox, so containerd is left alone.
    writeFileSync(join(root, "etc/kata-containers/configuration.toml"), "[hypervisor.clh]\n");
    expect(await runtime.ensure(active)).toBe(false);
    expect(restarts()).toBe(2);

    // Removed again: back to the shipped file on the next pass.
    rmSync(join(root, "etc/kata-containers/configuration.toml"));
    expect(await runtime.ensure(active)).toBe(true);
    expect(registeredConfigPaths(root)).toEqual(shipped);
    expect(restarts()).toBe(3);
  });
});
