// The preflight's parsers of host facts: cpuinfo, the kvm-probe protocol, module state, Kata configuration.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseCpuinfo } from "../../../src/preflight/cpuinfo.ts";
import { loadKataConfigs, parseKataConfig, usesVirtioFs } from "../../../src/preflight/kata-config.ts";
import { parseProbeOutput } from "../../../src/preflight/kvm-probe.ts";
import { kvmProviders, readModules } from "../../../src/preflight/modules.ts";
import { CONFIGS } from "../../fixtures/preflight/hosts.ts";

const FIXTURES = join(import.meta.dirname, "../../fixtures/preflight");
const scratch = mkdtempSync(join(tmpdir(), "kata-preflight-unit-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const put = (path: string, content: string): void => {
  mkdirSync(join(scratch, path, ".."), { recursive: true });
  writeFileSync(join(scratch, path), content);
};

describe("parseCpuinfo", () => {
  it("reads the vendor and the first processor's flags", () => {
    const intel = parseCpuinfo(readFileSync(join(FIXTURES, "cpuinfo-intel-nested.txt"), "utf8"));
    expect(intel?.vendor).toBe("intel");
    expect(intel?.vendorId).toBe("GenuineIntel");
    for (const f of ["vmx", "hypervisor", "lm", "sse4_1", "ept"]) expect(intel?.flags.has(f)).toBe(true);
    const amd = parseCpuinfo(readFileSync(join(FIXTURES, "cpuinfo-amd.txt"), "utf8"));
    expect(amd?.vendor).toBe("amd");
    expect(amd?.flags.has("svm")).toBe(true);
    expect(amd?.flags.has("hypervisor")).toBe(false);
  });

  it("this machine's own cpuinfo parses", () => {
    expect(parseCpuinfo(readFileSync("/proc/cpuinfo", "utf8"))?.flags.has("lm")).toBe(true);
  });

  it("nothing recognisable is null", () => {
    expect(parseCpuinfo("")).toBe(null);
    expect(parseCpuinfo("Processor : ARMv7\nFeatures : half thumb\n")).toBe(null);
  });
});

describe("parseProbeOutput", () => {
  it("accepts the helper's lines", () => {
    expect(parseProbeOutput('{"open":"ok","chardev":true,"apiVersion":12,"createVm":"ok"}\n')).toEqual({
      open: "ok",
      chardev: true,
      apiVersion: 12,
      createVm: "ok",
    });
    expect(parseProbeOutput('{"open":"ok","chardev":true,"apiVersion":"ENOTTY","createVm":null}')?.apiVersion).toBe(
      "ENOTTY",
    );
  });

  it("rejects anything else", () => {
    for (const bad of [
      "",
      "ok",
      "null",
      "[]",
      '{"open":1}',
      '{"open":"ok","chardev":"yes","apiVersion":12,"createVm":"ok"}',
      '{"open":"ok","chardev":true,"apiVersion":1.5,"createVm":"ok"}',
      '{"open":"ok","chardev":true,"apiVersion":12,"createVm":false}',
    ]) {
      expect(parseProbeOutput(bad), bad).toBe(null);
    }
  });
});

describe("readModules", () => {
  it("tells loaded, built-in and absent apart, without /proc/modules too", async () => {
    put("/a/proc/modules", "kvm_intel 1 0 - Live 0x0\nkvm 1 1 kvm_intel, Live 0x0\n");
    put("/a/sys/module/kvm_intel/parameters/nested", "Y\n");
    put("/a/sys/module/kvm_pvm/parameters/force", "N\n");
    put("/a/sys/module/vhost/initstate", "live\n");
    const host = (p: string): string => join(scratch, "a", p);
    const m = await readModules(host);
    expect(await m.state("kvm_intel")).toBe("loaded");
    expect(await m.state("kvm_pvm")).toBe("built-in");
    expect(await m.state("vhost")).toBe("loaded"); // has initstate: loadable, even if /proc/modules missed it
    expect(await m.state("kvm_amd")).toBe("absent");
    expect(await m.param("kvm_intel", "nested")).toBe("Y");
    expect(await m.param("kvm_intel", "ept")).toBe(null);
    expect(kvmProviders(m)).toEqual(["kvm_intel", "kvm_pvm"]);

    const empty = await readModules((p) => join(scratch, "nothing", p));
    expect(await empty.state("kvm")).toBe("absent");
  });
});

describe("Kata configuration", () => {
  it("parses the hypervisor sections the preflight needs", () => {
    const [qemu] = parseKataConfig(CONFIGS.qemu.text, CONFIGS.qemu.file);
    expect(qemu).toEqual({
      name: "qemu",
      configFile: CONFIGS.qemu.file,
      path: "/opt/kata/bin/qemu-system-x86_64",
      kernel: "/opt/kata/share/kata-containers/vmlinux.container",
      image: "/opt/kata/share/kata-containers/kata-containers.img",
      initrd: null,
      firmware: null,
      jailerPath: null,
      virtioFsDaemon: "/opt/kata/libexec/virtiofsd",
      sharedFs: "virtio-fs",
      defaultMemoryMiB: 2048,
      disableVhostNet: false,
    });
    const [fc] = parseKataConfig(CONFIGS.firecracker.text, CONFIGS.firecracker.file);
    expect(fc?.name).toBe("firecracker");
    expect(fc?.jailerPath).toBe("/opt/kata/bin/jailer");
    expect(fc && usesVirtioFs(fc)).toBe(false);
    expect(qemu && usesVirtioFs(qemu)).toBe(true);
    expect(parseKataConfig("[runtime]\nenable_debug = true\n", "x")).toEqual([]);
    // Peer pods: the VM runs elsewhere, so the preflight has nothing to check for it here.
    const remote = '[hypervisor.remote]\nremote_hypervisor_socket = "/run/peerpod/hypervisor.sock"\n';
    expect(parseKataConfig(remote, "x")).toEqual([]);
  });

  it("per hypervisor, the file of handler kata (/etc when there) wins, then kata-<name>'s, then variants", async () => {
    const defaults = "/p/opt/kata/share/defaults/kata-containers";
    put(`${defaults}/configuration-qemu-tdx.toml`, '[hypervisor.qemu]\npath = "/opt/kata/bin/qemu-tdx"\n');
    put(`${defaults}/configuration-qemu.toml`, '[hypervisor.qemu]\npath = "/opt/kata/bin/qemu-system-x86_64"\n');
    put(`${defaults}/configuration-fc.toml`, '[hypervisor.firecracker]\npath = "/opt/kata/bin/firecracker"\n');
    put(`${defaults}/configuration-clh.toml`, '[hypervisor.clh]\npath = "/opt/kata/bin/cloud-hypervisor"\n');
    put(`${defaults}/configuration-broken.toml`, "[hypervisor.qemu\n");
    put("/p/etc/kata-containers/configuration.toml", '[hypervisor.clh]\npath = "/usr/local/bin/clh"\n');
    const under = (p: string): string => join(scratch, "p", p);
    const configs = await loadKataConfigs(under, under);
    expect(configs.hypervisors.map((h) => [h.name, h.path])).toEqual([
      ["clh", "/usr/local/bin/clh"],
      ["firecracker", "/opt/kata/bin/firecracker"],
      ["qemu", "/opt/kata/bin/qemu-system-x86_64"],
    ]);
    expect(configs.errors).toHaveLength(1);
    expect(configs.errors[0]).toMatch(
      /^\/opt\/kata\/share\/defaults\/kata-containers\/configuration-broken\.toml:1: not valid TOML/,
    );
    expect(configs.files).toContain("/etc/kata-containers/configuration.toml");
    expect(configs.handlers[0]).toEqual({ name: "kata", configPath: "/etc/kata-containers/configuration.toml" });
  });

  it("reads only files a handler runs with: a shipped configuration.toml gives way to /etc", async () => {
    const defaults = "/q/opt/kata/share/defaults/kata-containers";
    put(`${defaults}/configuration.toml`, '[hypervisor.qemu]\npath = "/opt/kata/bin/qemu-system-x86_64"\n');
    put(`${defaults}/configuration-clh.toml`, '[hypervisor.clh]\npath = "/opt/kata/bin/cloud-hypervisor"\n');
    const under = (p: string): string => join(scratch, "q", p);
    const shipped = await loadKataConfigs(under, under);
    expect(shipped.handlers.find((h) => h.name === "kata")?.configPath).toBe(
      "/opt/kata/share/defaults/kata-containers/configuration.toml",
    );
    expect(shipped.hypervisors.map((h) => h.name)).toEqual(["clh", "qemu"]);

    put("/q/etc/kata-containers/configuration.toml", '[hypervisor.clh]\npath = "/usr/local/bin/clh"\n');
    const etc = await loadKataConfigs(under, under);
    expect(etc.files).toEqual([
      "/etc/kata-containers/configuration.toml",
      "/opt/kata/share/defaults/kata-containers/configuration-clh.toml",
    ]);
    // No handler runs with the shipped configuration.toml any more, so nothing runs QEMU: nothing to judge.
    expect(etc.hypervisors.map((h) => [h.name, h.configFile])).toEqual([
      ["clh", "/etc/kata-containers/configuration.toml"],
    ]);
  });

  it("merges the config.d drop-ins beside each file in name order, as Kata does, and names a broken one", async () => {
    const defaults = "/r/opt/kata/share/defaults/kata-containers";
    put(
      `${defaults}/configuration-qemu.toml`,
      '[hypervisor.qemu]\npath = "/opt/kata/bin/qemu-system-x86_64"\ndefault_memory = 2048\n',
    );
    put(`${defaults}/config.d/20-memory.toml`, "[hypervisor.qemu]\ndefault_memory = 4096\n");
    put(
      `${defaults}/config.d/10-firmware.toml`,
      '[hypervisor.qemu]\nfirmware = "/opt/kata/share/ovmf/OVMF.fd"\ndefault_memory = 1024\n',
    );
    const under = (p: string): string => join(scratch, "r", p);
    const merged = await loadKataConfigs(under, under);
    expect(merged.hypervisors.map((h) => [h.path, h.firmware, h.defaultMemoryMiB])).toEqual([
      ["/opt/kata/bin/qemu-system-x86_64", "/opt/kata/share/ovmf/OVMF.fd", 4096],
    ]);
    expect(merged.files).toEqual([
      `${defaults.slice(2)}/configuration-qemu.toml`,
      `${defaults.slice(2)}/config.d/10-firmware.toml`,
      `${defaults.slice(2)}/config.d/20-memory.toml`,
    ]);
    put(`${defaults}/config.d/30-broken.toml`, "[hypervisor.qemu\n");
    const broken = await loadKataConfigs(under, under);
    expect(broken.errors).toEqual([expect.stringMatching(/config\.d\/30-broken\.toml:1: not valid TOML/)]);
    expect(broken.hypervisors).toEqual([]);
  });

  it("no configuration anywhere is an empty answer", async () => {
    const none = (p: string): string => join(scratch, "none", p);
    expect(await loadKataConfigs(none, none)).toEqual({ hypervisors: [], handlers: [], files: [], errors: [] });
  });
});
