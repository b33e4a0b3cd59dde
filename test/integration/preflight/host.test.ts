// The preflight on this machine itself, no fixtures: the real /proc, /sys and /dev, the real kvm-probe helper
// doing real ioctls on /dev/kvm. This VM has working KVM through kvm_pvm and no vmx/svm flag: a preflight that
// only read CPU flags would fail it.
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { hostPaths } from "../../../src/paths.ts";
import { parseProbeOutput, probeKvm } from "../../../src/preflight/kvm-probe.ts";
import { runPreflight } from "../../../src/preflight/run.ts";
import { buildPayload } from "../../fixtures/preflight/hosts.ts";
import { ensureHelpers } from "../../fixtures/preflight/toolchain.ts";

const PROBE = join(import.meta.dirname, "..", "..", "..", "build", "kvm-probe");
const hasKvm = existsSync("/dev/kvm");
const flags = readFileSync("/proc/cpuinfo", "utf8");
const hardwareVirt = /^flags\s*:.*\b(vmx|svm)\b/m.test(flags);
const scratch = mkdtempSync(join(tmpdir(), "kata-host-test-"));

beforeAll(() => ensureHelpers());
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
afterEach(() => {
  delete process.env.KATA_SYSEXTD_KVM_PROBE;
});

describe("this machine", () => {
  it.skipIf(!hasKvm)("the kvm-probe helper creates a VM through real ioctls", () => {
    const out = parseProbeOutput(execFileSync(PROBE, [], { encoding: "utf8" }));
    expect(out).toEqual({ open: "ok", chardev: true, apiVersion: 12, createVm: "ok" });
  });

  it("the helper reports a missing device and a regular file honestly", () => {
    expect(parseProbeOutput(execFileSync(PROBE, ["/nonexistent/kvm"], { encoding: "utf8" }))?.open).toBe("ENOENT");
    const file = join(scratch, "not-a-device");
    writeFileSync(file, "");
    expect(parseProbeOutput(execFileSync(PROBE, [file], { encoding: "utf8" }))).toEqual({
      open: "ok",
      chardev: false,
      apiVersion: null,
      createVm: null,
    });
  });

  it("a character device that is not KVM answers the API ioctl with ENOTTY", async () => {
    const probe = await probeKvm({ device: "/dev/null", fixtureRoot: false, helper: PROBE, timeoutMs: 5000 });
    expect(probe).toEqual({
      kind: "probed",
      device: "/dev/null",
      recorded: false,
      output: { open: "ok", chardev: true, apiVersion: "ENOTTY", createVm: null },
    });
  });

  it.skipIf(!hasKvm || hardwareVirt)(
    "usable KVM without vmx/svm passes, with a nested/paravirtual note (not a failure)",
    async () => {
      const r = await runPreflight({ paths: hostPaths("/") });
      const kvm = r.checks.find((c) => c.id === "kvm-usable");
      expect(kvm?.status).toBe("pass");
      expect(kvm?.detail).toMatch(/^\/dev\/kvm: API 12, KVM_CREATE_VM ok; nested\/paravirtual: no vmx\/svm CPU flag/);
      const cpu = r.checks.find((c) => c.id === "cpu-virtualization");
      expect(cpu?.status).toBe("pass");
      expect(cpu?.detail).toContain("nested/paravirtual KVM");
      expect(r.checks.find((c) => c.id === "kvm-modules")?.status).toBe("pass");
      // Nothing in the virtualisation group fails on this machine.
      expect(r.checks.filter((c) => c.group === "virtualisation" && c.status === "fail")).toEqual([]);
    },
  );

  it.skipIf(!hasKvm)(
    "a payload on this host: real binaries run, link against this glibc, and qemu lacks vhost-vsock here",
    async () => {
      const payload = buildPayload(join(scratch, "payload"), { hypervisors: ["qemu", "clh"] });
      const r = await runPreflight({ paths: hostPaths("/"), payloadRoot: payload });
      const abi = r.checks.filter((c) => c.id === "abi");
      expect(abi.map((c) => c.status)).toEqual(["pass"]);
      expect(abi[0]?.detail).toMatch(/^4 ELF executables \(4 dynamic, 0 static\); highest need GLIBC_2\.\d+/);
      expect(r.checks.find((c) => c.id === "hypervisor-binary" && c.hypervisor === "clh")?.status).toBe("pass");
      // Facts of this VM (ENVIRONMENT.md): no /dev/vhost-vsock, so QEMU cannot run Kata while Cloud Hypervisor can.
      const vsock = existsSync("/dev/vhost-vsock");
      expect(r.hypervisors.find((h) => h.name === "qemu")?.ok).toBe(vsock && existsSync("/dev/vhost-net"));
      expect(r.checks.find((c) => c.id === "vhost-vsock" && c.hypervisor === "clh")?.status).toBe("pass");
    },
  );
});

describe("the KATA_SYSEXTD_KVM_PROBE override", () => {
  it.skipIf(!hasKvm)("runs another probe that speaks the same protocol", async () => {
    const fake = join(scratch, "busy-probe");
    writeFileSync(fake, `#!/bin/sh\necho '{"open":"ok","chardev":true,"apiVersion":12,"createVm":"EBUSY"}'\n`);
    chmodSync(fake, 0o755);
    process.env.KATA_SYSEXTD_KVM_PROBE = fake;
    const r = await runPreflight({ paths: hostPaths("/") });
    const kvm = r.checks.find((c) => c.id === "kvm-usable");
    expect(kvm?.status).toBe("fail");
    expect(kvm?.detail).toBe("KVM_CREATE_VM failed with EBUSY: another hypervisor holds VT-x/AMD-V");
  });

  it.skipIf(!hasKvm)("a helper that is not there is a warning that says how to build it", async () => {
    process.env.KATA_SYSEXTD_KVM_PROBE = join(scratch, "no-such-helper");
    const r = await runPreflight({ paths: hostPaths("/") });
    const kvm = r.checks.find((c) => c.id === "kvm-usable");
    expect(kvm?.status).toBe("warn");
    expect(kvm?.remedy).toContain("node scripts/build-helpers.mjs");
    // This machine has no vmx/svm flag (paravirtual KVM): with KVM untested, no failure is claimed for the CPU.
    const cpu = r.checks.find((c) => c.id === "cpu-virtualization");
    if (!/\b(vmx|svm)\b/.test(readFileSync("/proc/cpuinfo", "utf8"))) {
      expect(cpu).toMatchObject({ status: "warn", detail: expect.stringContaining("could not be tested") });
    } else {
      expect(cpu?.status).toBe("pass");
    }
  });
});
