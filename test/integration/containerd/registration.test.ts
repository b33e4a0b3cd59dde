// The merged configuration is checked by the real containerd (`containerd --config FILE config dump`), so a
// registration that containerd would read differently than we think fails here.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { kataHandlers } from "../../../src/containerd/handlers.ts";
import {
  containerdFiles,
  type Decision,
  register,
  restore,
  snapshot,
  unregister,
} from "../../../src/containerd/registration.ts";
import { hostPaths } from "../../../src/paths.ts";
import { skipWithout } from "../../helpers/needs.ts";

const noContainerd = skipWithout(
  (() => {
    try {
      execFileSync("containerd", ["--version"], { stdio: "ignore" });
      return null;
    } catch {
      return "containerd is not installed (Debian package containerd)";
    }
  })(),
  "the containerd registration test",
);

// Flatcar's shipped /usr/share/containerd/config.toml, in substance: CRI with SELinux and the systemd cgroup driver.
const FLATCAR_BASE = `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
subreaper = true
oom_score = -999
[grpc]
address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
enable_selinux = true
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
SystemdCgroup = true
`;

const D = "opt/kata/share/defaults/kata-containers";
const CONFIG = {
  baseConfig: "/usr/share/containerd/config.toml",
  configFile: "/etc/kata-sysextd/containerd.toml",
  unitDropIn: "/etc/systemd/system/containerd.service.d/50-kata-sysextd.conf",
};

/** Flatcar's unit: CONTAINERD_CONFIG names the base, our drop-in points it at the merged file. */
const FLATCAR: Decision = {
  choice: {
    base: CONFIG.baseConfig,
    why: "Flatcar's containerd.service",
    service: [`Environment=CONTAINERD_CONFIG=${CONFIG.configFile}`],
  },
  unitFiles: "",
};

const roots: string[] = [];
afterAll(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

function rootWithBase(): string {
  const root = mkdtempSync(join(tmpdir(), "ctd-"));
  roots.push(root);
  mkdirSync(join(root, "usr/share/containerd"), { recursive: true });
  writeFileSync(join(root, CONFIG.baseConfig), FLATCAR_BASE);
  return root;
}

function dump(configFile: string): string {
  return execFileSync("containerd", ["--config", configFile, "config", "dump"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
}

describe.skipIf(noContainerd)("containerd registration (real containerd config dump)", () => {
  it("adds every Kata handler and keeps the base's CRI settings", async () => {
    const root = rootWithBase();
    const files = containerdFiles(hostPaths(root), CONFIG);
    const handlers = kataHandlers([`${D}/configuration-clh.toml`, `${D}/configuration-qemu.toml`], {
      etcConfig: false,
    });
    expect(await register(files, handlers, FLATCAR)).toBe(true);

    const dumped = dump(files.config);
    for (const name of ["kata", "kata-clh", "kata-qemu"]) {
      expect(dumped).toContain(`[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.${name}]`);
    }
    expect(dumped).toMatch(/runtime_type = "io.containerd.kata.v2"/);
    expect(dumped).toContain(`ConfigPath = "/${D}/configuration-qemu.toml"`);
    // The base survives key by key: what a conf.d import would have lost.
    expect(dumped).toMatch(/enable_selinux = true/);
    expect(dumped).toMatch(/SystemdCgroup = true/);
    expect(readFileSync(files.unitDropIn, "utf8")).toContain(`Environment=CONTAINERD_CONFIG=${CONFIG.configFile}\n`);
    // Idempotent: the same registration changes nothing.
    expect(await register(files, handlers, FLATCAR)).toBe(false);
  });

  it("unregister removes the drop-in and the merged file; restore puts a snapshot back exactly", async () => {
    const root = rootWithBase();
    const files = containerdFiles(hostPaths(root), CONFIG);
    const empty = await snapshot(files);
    await register(files, kataHandlers([`${D}/configuration-clh.toml`], { etcConfig: false }), FLATCAR);
    const registered = await snapshot(files);
    expect(await unregister(files)).toBe(true);
    expect(existsSync(files.unitDropIn) || existsSync(files.config)).toBe(false);
    expect(await unregister(files)).toBe(false);
    await restore(files, registered);
    expect(await snapshot(files)).toEqual(registered);
    await restore(files, empty);
    expect(await snapshot(files)).toEqual(empty);
  });

  it("merges a version 1 file (no version line) where containerd 1.x reads it: plugins.cri", async () => {
    const root = rootWithBase();
    const files = containerdFiles(hostPaths(root), CONFIG);
    writeFileSync(
      join(root, CONFIG.baseConfig),
      readFileSync(join(import.meta.dirname, "../../fixtures/containerd/v1-noversion.toml")),
    );
    await register(files, kataHandlers([`${D}/configuration-qemu.toml`], { etcConfig: false }), FLATCAR);
    const dumped = dump(files.config);
    // containerd shows it as version 2 after its own migration: the runtimes and the base's settings arrived.
    expect(dumped).toContain(`[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-qemu]`);
    expect(dumped).toContain(`ConfigPath = "/${D}/configuration-qemu.toml"`);
    expect(dumped).toContain(`sandbox_image = "registry.k8s.io/pause:3.6"`);
    expect(dumped).toMatch(/enable_selinux = true/);
  });

  it("refuses a base that is not TOML or of an unknown version, naming the file", async () => {
    const root = rootWithBase();
    const files = containerdFiles(hostPaths(root), CONFIG);
    writeFileSync(join(root, CONFIG.baseConfig), "version = 4\n");
    await expect(register(files, [], FLATCAR)).rejects.toMatchObject({
      code: "containerd-failed",
      message: expect.stringContaining("version 4"),
    });
    writeFileSync(join(root, CONFIG.baseConfig), "[plugins\n");
    await expect(register(files, [], FLATCAR)).rejects.toMatchObject({
      message: expect.stringContaining(CONFIG.baseConfig),
    });
    expect(existsSync(files.config)).toBe(false);
  });
});
