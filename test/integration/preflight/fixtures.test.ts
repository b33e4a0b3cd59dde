// The preflight against fixture host trees: each tree is a kind of host the issue names, with a merged payload
// of real ELF executables (compiled here) that really run with --version, and real xattrs for SELinux labels.
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostPaths } from "../../../src/paths.ts";
import { type PreflightReport, runPreflight } from "../../../src/preflight/run.ts";
import {
  buildHost,
  buildPayload,
  CONFIGS,
  CONTAINERD_CONFIG,
  type HostSpec,
  KVM_EACCES,
  KVM_EBUSY,
  PATHS,
  type PayloadSpec,
} from "../../fixtures/preflight/hosts.ts";
import { ensureHelpers, fakeVmm, patchVersionNeed, scratch, setxattrTool } from "../../fixtures/preflight/toolchain.ts";

const roots: string[] = [];

async function preflight(host: HostSpec, payload: PayloadSpec | null = {}): Promise<PreflightReport> {
  const root = buildHost(host);
  roots.push(root);
  if (payload !== null) buildPayload(root, payload);
  return runPreflight({ paths: hostPaths(root) });
}

/** hypervisor undefined: any; null: only the host-wide result. */
const find = (r: PreflightReport, id: string, hypervisor?: string | null) =>
  r.checks.filter((c) => c.id === id && (hypervisor === undefined || c.hypervisor === hypervisor));
const one = (r: PreflightReport, id: string, hypervisor?: string | null) => {
  const found = find(r, id, hypervisor);
  expect(found, `exactly one ${id}${hypervisor ? ` [${hypervisor}]` : ""}`).toHaveLength(1);
  return found[0] as (typeof found)[number];
};
/** A fake executable whose GLIBC_2.34 need is patched to GLIBC_2.99: newer than any host's glibc. */
const needsGlibc299 = (name: string, version: string): string =>
  patchVersionNeed(fakeVmm(`${name}-plain`, { version }), join(scratch(), "patched", name), "GLIBC_2.34", "GLIBC_2.99");
const verdict = (r: PreflightReport, name: string) => r.hypervisors.find((h) => h.name === name);

beforeAll(() => ensureHelpers());
afterAll(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

describe("virtualisation", () => {
  it("an Intel host with nested KVM passes everything and says it is nested", async () => {
    const r = await preflight({ cpu: "intel-nested" });
    expect(r.failed).toBe(0);
    expect(r.ok).toBe(true);
    expect(one(r, "cpu-virtualization").detail).toBe("Intel VT-x (vmx); running as a guest (nested virtualisation)");
    expect(one(r, "kvm-modules")).toMatchObject({ status: "pass" });
    expect(one(r, "kvm-modules").detail).toContain("kvm_intel (loaded: Intel VT-x)");
    expect(one(r, "kvm-params")).toMatchObject({
      status: "pass",
      detail: "kvm_intel: nested=Y, unrestricted_guest=Y, ept=Y",
    });
    expect(one(r, "kvm-usable").status).toBe("pass");
    expect(one(r, "kvm-usable").detail).toContain("recorded kvm-probe result");
    // The one warning: the payload ships /opt, which is read-only while merged.
    expect(r.warnings).toBe(1);
    expect(one(r, "opt-readonly").status).toBe("warn");
    expect(r.hypervisors.map((h) => h.verdict)).toEqual(["clh: ready (1 warning)", "qemu: ready (1 warning)"]);
  });

  it("an AMD host passes with AMD-V and kvm_amd", async () => {
    const r = await preflight({ cpu: "amd", modules: { kvm: {}, kvm_amd: { nested: "1", npt: "1" } } });
    expect(one(r, "cpu-features").detail).toBe("AMD (AuthenticAMD): lm, sse4_1 present");
    expect(one(r, "cpu-virtualization")).toMatchObject({ status: "pass", detail: "AMD-V (svm)" });
    expect(one(r, "kvm-params")).toMatchObject({ status: "pass", detail: "kvm_amd: nested=1, npt=1" });
    expect(r.ok).toBe(true);
  });

  it("a host without KVM fails the KVM checks, with remedies, and no hypervisor is ready", async () => {
    const r = await preflight({ cpu: "intel-novmx", modules: {}, kvm: null });
    expect(one(r, "kvm-usable")).toMatchObject({ status: "fail", detail: "/dev/kvm does not exist" });
    expect(one(r, "kvm-usable").remedy).toContain("modprobe");
    expect(one(r, "cpu-virtualization")).toMatchObject({ status: "fail" });
    expect(one(r, "cpu-virtualization").remedy).toContain("nested virtualisation on the outer hypervisor");
    expect(one(r, "kvm-modules")).toMatchObject({ status: "fail", remedy: "modprobe kvm_intel" });
    expect(one(r, "kvm-params").status).toBe("skip");
    expect(r.ok).toBe(false);
    expect(r.hypervisors.every((h) => !h.ok)).toBe(true);
    expect(verdict(r, "qemu")?.verdict).toBe(
      "qemu: cannot run Kata: cpu-virtualization, kvm-modules, kvm-usable failed",
    );
  });

  it("EBUSY from KVM_CREATE_VM means another hypervisor holds VT-x", async () => {
    const r = await preflight({ kvm: KVM_EBUSY });
    expect(one(r, "kvm-usable").status).toBe("fail");
    expect(one(r, "kvm-usable").detail).toContain("another hypervisor holds VT-x/AMD-V");
    expect(one(r, "kvm-usable").remedy).toContain("VirtualBox");
  });

  it("a /dev/kvm that cannot be opened read-write fails with a permission remedy", async () => {
    const r = await preflight({ kvm: KVM_EACCES });
    expect(one(r, "kvm-usable").detail).toContain("cannot open /dev/kvm read-write: EACCES");
    expect(one(r, "kvm-usable").remedy).toContain("chmod 0660 /dev/kvm");
  });

  it("a /dev/kvm that is a plain file without a recorded result is 'not a character device'", async () => {
    const r = await preflight({ kvm: "empty-file" });
    expect(one(r, "kvm-usable")).toMatchObject({ status: "fail" });
    expect(one(r, "kvm-usable").detail).toBe(
      "/dev/kvm is not a character device (and holds no recorded kvm-probe result)",
    );
  });

  it("unrestricted_guest=N is a warning; a CPU without lm/sse4_1 fails", async () => {
    const r = await preflight({
      cpu: "old-32bit",
      modules: { kvm: {}, kvm_intel: { nested: "N", unrestricted_guest: "N", ept: "N" } },
    });
    expect(one(r, "kvm-params").status).toBe("warn");
    expect(one(r, "kvm-params").remedy).toContain("unrestricted_guest=1 ept=1");
    expect(one(r, "cpu-features")).toMatchObject({ status: "fail", detail: "Intel CPU lacks lm, sse4_1" });
  });
});

describe("devices follow the configured hypervisor", () => {
  it("KVM without vhost-vsock: QEMU and Firecracker fail, Cloud Hypervisor passes (hybrid vsock)", async () => {
    const r = await preflight(
      { devices: ["/dev/net/tun", "/dev/vhost-net"] },
      { hypervisors: ["qemu", "clh", "firecracker"] },
    );
    expect(one(r, "vhost-vsock", "qemu")).toMatchObject({ status: "fail" });
    expect(one(r, "vhost-vsock", "qemu").remedy).toContain("modprobe vhost_vsock");
    expect(one(r, "vhost-vsock", "firecracker").status).toBe("fail");
    expect(one(r, "vhost-vsock", "clh")).toMatchObject({
      status: "pass",
      detail: "not needed: hybrid vsock over a unix socket",
    });
    expect(verdict(r, "qemu")).toEqual({
      name: "qemu",
      ok: false,
      verdict: "qemu: cannot run Kata: vhost-vsock failed",
    });
    expect(verdict(r, "firecracker")?.ok).toBe(false);
    expect(verdict(r, "clh")).toEqual({ name: "clh", ok: true, verdict: "clh: ready (1 warning)" });
  });

  it("QEMU needs vhost-net unless the configuration disables it", async () => {
    const r = await preflight({ devices: ["/dev/net/tun", "/dev/vhost-vsock"] });
    expect(one(r, "vhost-net", "qemu").status).toBe("fail");
    expect(one(r, "vhost-net", "clh").status).toBe("skip");
  });
});

describe("Kata payload", () => {
  it("reports the versions the binaries print, and the configuration files used", async () => {
    const r = await preflight({});
    expect(one(r, "hypervisor-binary", "qemu").detail).toBe(`${PATHS.qemu}: QEMU emulator version 9.1.2 (kata-static)`);
    expect(one(r, "hypervisor-binary", "clh").detail).toBe(`${PATHS.clh}: cloud-hypervisor v45.0`);
    expect(one(r, "virtiofsd", "qemu").detail).toBe(`${PATHS.virtiofsd}: virtiofsd 1.13.0`);
    expect(one(r, "guest-kernel", "qemu")).toMatchObject({ status: "pass", detail: `${PATHS.kernel} (4096 bytes)` });
    expect(one(r, "guest-image", "clh")).toMatchObject({ status: "pass", detail: `${PATHS.image} (8192 bytes)` });
    expect(one(r, "kata-config").detail).toBe(
      "hypervisors: clh (configuration-clh.toml), qemu (configuration-qemu.toml); handler kata runs with /opt/kata/share/defaults/kata-containers/configuration-clh.toml",
    );
    expect(one(r, "shm-size", "qemu").status).toBe("pass");
    expect(one(r, "shm-size", "clh").status).toBe("skip");
  });

  it("a payload whose virtiofsd is missing fails every hypervisor that shares files through virtio-fs", async () => {
    const r = await preflight({}, { hypervisors: ["qemu", "clh", "firecracker"], omit: [PATHS.virtiofsd] });
    expect(one(r, "virtiofsd", "qemu")).toMatchObject({
      status: "fail",
      detail: `${PATHS.virtiofsd} does not exist`,
    });
    expect(one(r, "virtiofsd", "qemu").remedy).toContain("virtio_fs_daemon");
    expect(one(r, "virtiofsd", "clh").status).toBe("fail");
    expect(one(r, "virtiofsd", "firecracker").status).toBe("skip");
    expect(verdict(r, "qemu")?.ok).toBe(false);
    expect(verdict(r, "clh")?.ok).toBe(false);
    expect(verdict(r, "firecracker")).toMatchObject({ ok: true, verdict: "firecracker: ready (1 warning)" });
  });

  it("judges the merged config.d result: firmware a drop-in names, and the jailer Firecracker's file names", async () => {
    const root = buildHost({});
    roots.push(root);
    buildPayload(root, { hypervisors: ["qemu", "firecracker"], omit: [PATHS.jailer] });
    const dropIns = join(root, "opt/kata/share/defaults/kata-containers/config.d");
    mkdirSync(dropIns, { recursive: true });
    writeFileSync(join(dropIns, "50-ovmf.toml"), '[hypervisor.qemu]\nfirmware = "/opt/kata/share/ovmf/OVMF.fd"\n');
    const r = await runPreflight({ paths: hostPaths(root) });
    expect(one(r, "guest-firmware", "qemu")).toMatchObject({
      status: "fail",
      detail: "/opt/kata/share/ovmf/OVMF.fd does not exist",
      remedy: expect.stringContaining("firmware = <an existing file>"),
    });
    expect(one(r, "jailer", "firecracker")).toMatchObject({
      status: "fail",
      detail: "/opt/kata/bin/jailer does not exist",
    });
    expect(find(r, "guest-firmware", "firecracker")).toEqual([]);
    expect(verdict(r, "qemu")?.ok).toBe(false);
  });

  it("no merged extension: no configuration, every hypervisor-specific check is absent, kata-config fails", async () => {
    const r = await preflight({}, null);
    expect(one(r, "kata-config").status).toBe("fail");
    expect(r.hypervisors).toEqual([]);
    expect(one(r, "opt-readonly").status).toBe("pass");
  });

  it("ships /opt: warns that /opt is read-only while merged", async () => {
    const r = await preflight({});
    expect(one(r, "opt-readonly")).toMatchObject({ status: "warn" });
    expect(one(r, "opt-readonly").detail).toContain("/opt is read-only while it is merged");
  });
});

describe("ABI: binaries against the host's glibc and libraries", () => {
  it("a hypervisor needing a newer glibc, and one needing a library the host lacks, fail their own verdicts", async () => {
    const newer = needsGlibc299("qemu-system-x86_64", "QEMU emulator version 9.1.2");
    // The loader agrees that this binary cannot run here.
    const ran = spawnSync(newer, ["--version"], { encoding: "utf8" });
    expect(ran.status).not.toBe(0);
    expect(ran.stderr).toContain("GLIBC_2.99' not found");

    const needsLib = fakeVmm("cloud-hypervisor", { version: "cloud-hypervisor v45.0", katatest: true });
    const r = await preflight(
      {},
      { hypervisors: ["qemu", "clh", "firecracker"], replace: { [PATHS.qemu]: newer, [PATHS.clh]: needsLib } },
    );

    const qemu = one(r, "abi", "qemu");
    expect(qemu.status).toBe("fail");
    expect(qemu.detail).toMatch(
      /^\/opt\/kata\/bin\/qemu-system-x86_64: needs GLIBC_2\.99 from libc\.so\.6, which the host's \/usr\/lib64\/libc\.so\.6 does not define$/,
    );
    expect(qemu.remedy).toContain("GLIBC_2.99 > GLIBC_2.");
    const clh = one(r, "abi", "clh");
    expect(clh.detail).toBe("/opt/kata/bin/cloud-hypervisor: needs libkatatest.so.1, not found");
    expect(clh.remedy).toContain("ship the missing libraries");
    // The binaries really fail to run, and the payload check says so too.
    expect(one(r, "hypervisor-binary", "qemu").status).toBe("fail");
    expect(one(r, "hypervisor-binary", "clh").status).toBe("fail");
    // The overview line passes: each failure belongs to one hypervisor, and firecracker stays ready.
    expect(one(r, "abi", null).status).toBe("pass");
    expect(one(r, "abi", null).detail).toMatch(
      /^6 ELF executables \(6 dynamic, 0 static\); highest need GLIBC_2\.99, host libc provides up to GLIBC_2\.\d+: 2 cannot run on this host \(listed below\)$/,
    );
    expect(verdict(r, "firecracker")?.ok).toBe(true);
    expect(verdict(r, "qemu")?.verdict).toBe("qemu: cannot run Kata: hypervisor-binary, abi failed");
  });

  it("a library shipped in the image and found through RUNPATH $ORIGIN/../lib passes, static binaries pass", async () => {
    const withRunpath = fakeVmm("cloud-hypervisor", {
      version: "cloud-hypervisor v45.0",
      katatest: true,
      runpath: "$ORIGIN/../lib",
    });
    const staticVmm = fakeVmm("firecracker", { version: "Firecracker v1.10.1", static: true });
    const lib = join(scratch(), "katatest", "libkatatest.so.1");
    const r = await preflight(
      {},
      {
        hypervisors: ["clh", "firecracker"],
        replace: { [PATHS.clh]: withRunpath, [PATHS.firecracker]: staticVmm, "/opt/kata/lib/libkatatest.so.1": lib },
      },
    );
    expect(find(r, "abi").filter((c) => c.status !== "pass")).toEqual([]);
    expect(one(r, "abi", null).detail).toMatch(/^6 ELF executables \(5 dynamic, 1 static\)/);
    expect(one(r, "hypervisor-binary", "clh").detail).toBe(`${PATHS.clh}: cloud-hypervisor v45.0`);
    expect(r.ok).toBe(true);
  });
});

describe("under --root a binary runs with the root's libraries, never this machine's", () => {
  // libm ships with every glibc, so this machine has it whatever else is installed; the fixture root does not.
  it("a hypervisor needing a library only this machine has fails to run, as it would on that host", async () => {
    const needsLibm = fakeVmm("cloud-hypervisor", { version: "cloud-hypervisor v45.0", hostLib: "libm.so.6" });
    const r = await preflight({}, { hypervisors: ["clh"], replace: { [PATHS.clh]: needsLibm } });
    const binary = one(r, "hypervisor-binary", "clh");
    expect(binary.status).toBe("fail");
    expect(binary.detail).toContain("libm.so.6: cannot open shared object file");
    expect(one(r, "abi", "clh").detail).toContain("needs libm.so.6, not found");
  });

  it("a payload tree outside the root is judged by its ELF alone, never run with this machine's libraries", async () => {
    const root = buildHost({});
    const payload = buildPayload(buildHost({ libs: false }), { hypervisors: ["clh"] });
    roots.push(root, payload);
    writeFileSync(join(payload, PATHS.virtiofsd), "#!/bin/sh\necho virtiofsd 1.0\n");
    const r = await runPreflight({ paths: hostPaths(root), payloadRoot: payload });
    expect(one(r, "hypervisor-binary", "clh")).toMatchObject({
      status: "pass",
      detail: `${PATHS.clh}: not run (judged by its ELF: not root, or outside --root)`,
    });
    expect(one(r, "virtiofsd", "clh")).toMatchObject({ status: "fail" });
    expect(one(r, "virtiofsd", "clh").detail).toContain(`${PATHS.virtiofsd} is not an executable for this machine`);
  });
});

describe("ABI: the shim", () => {
  it("a shim that cannot run fails every hypervisor", async () => {
    const shim = needsGlibc299("containerd-shim-kata-v2", "Kata Containers containerd shim");
    const r = await preflight({}, { replace: { [PATHS.shim]: shim } });
    // The overview line and the shim's own line, both host-wide.
    const [overview, shimLine] = find(r, "abi", null);
    expect(overview?.status).toBe("fail");
    expect(shimLine?.status).toBe("fail");
    expect(shimLine?.detail).toMatch(/^\/opt\/kata\/bin\/containerd-shim-kata-v2: needs GLIBC_2\.99 from libc\.so\.6/);
    expect(find(r, "abi")).toHaveLength(2);
    expect(r.hypervisors.map((h) => h.verdict)).toEqual([
      "clh: cannot run Kata: abi failed",
      "qemu: cannot run Kata: abi failed",
    ]);
  });
});

describe("SELinux", () => {
  it("enforcing with unlabeled files fails per file; labeled files pass", async () => {
    const r = await preflight({ selinux: "enforcing" });
    expect(one(r, "selinux-mode").detail).toBe("SELinux enforcing");
    const failures = find(r, "selinux-labels").filter((c) => c.status === "fail");
    expect(failures.map((c) => `${c.hypervisor ?? "-"} ${c.detail}`).sort()).toEqual([
      `- ${PATHS.shim} is unlabeled under SELinux enforcing`,
      `clh ${PATHS.clh} is unlabeled under SELinux enforcing`,
      `clh ${PATHS.virtiofsd} is unlabeled under SELinux enforcing`,
      `qemu ${PATHS.qemu} is unlabeled under SELinux enforcing`,
      `qemu ${PATHS.virtiofsd} is unlabeled under SELinux enforcing`,
    ]);
    expect(failures[0]?.remedy).toContain("chcon");

    // Label them (a real security.selinux xattr) and the same tree passes.
    const root = roots.at(-1) as string;
    const setxattr = setxattrTool();
    for (const path of [PATHS.shim, PATHS.qemu, PATHS.clh, PATHS.virtiofsd]) {
      execFileSync(setxattr, ["security.selinux", "system_u:object_r:bin_t:s0", join(root, path)]);
    }
    const relabeled = await runPreflight({ paths: hostPaths(root) });
    expect(find(relabeled, "selinux-labels").map((c) => c.status)).toEqual(["pass"]);
    expect(one(relabeled, "selinux-labels").detail).toContain(`${PATHS.qemu} system_u:object_r:bin_t:s0`);
  });

  it("a label that cannot be read (ENOTSUP: no xattrs on that file system) counts as none under enforcing", async () => {
    // A helper speaking xattr-get's protocol: one "err ERRNO" line per file.
    const helper = join(scratch(), "xattr-get-enotsup");
    writeFileSync(helper, '#!/bin/sh\nshift\nfor f in "$@"; do echo "err ENOTSUP"; done\n');
    chmodSync(helper, 0o755);
    process.env.KATA_SYSEXTD_XATTR_GET = helper;
    try {
      const r = await preflight({ selinux: "enforcing" });
      const labels = find(r, "selinux-labels");
      expect(labels.map((c) => c.status)).not.toContain("pass");
      expect(labels.find((c) => c.detail.startsWith(PATHS.shim))?.detail).toBe(
        `${PATHS.shim} is unlabeled (its label cannot be read: ENOTSUP) under SELinux enforcing`,
      );
    } finally {
      delete process.env.KATA_SYSEXTD_XATTR_GET;
    }
  });

  it("without the xattr-get helper, enforcing gives a warning that says how to build it, not a guess", async () => {
    process.env.KATA_SYSEXTD_XATTR_GET = join(scratch(), "no-such-helper");
    try {
      const r = await preflight({ selinux: "enforcing" });
      expect(one(r, "selinux-labels")).toMatchObject({ status: "warn" });
      expect(one(r, "selinux-labels").remedy).toContain("KATA_SYSEXTD_XATTR_GET");
    } finally {
      delete process.env.KATA_SYSEXTD_XATTR_GET;
    }
  });

  it("permissive with unlabeled files only warns; no SELinux skips the labels", async () => {
    const permissive = await preflight({ selinux: "permissive" });
    expect(find(permissive, "selinux-labels").every((c) => c.status === "warn")).toBe(true);
    const none = await preflight({ selinux: null });
    expect(one(none, "selinux-mode").detail).toBe("SELinux absent");
    expect(one(none, "selinux-labels").status).toBe("skip");
    const disabled = await preflight({ selinux: "disabled" });
    expect(one(disabled, "selinux-mode").detail).toBe("SELinux disabled");
  });
});

describe("host integration", () => {
  it("cgroup v2, containerd and its kata handler", async () => {
    const good = await preflight({});
    expect(one(good, "cgroup-v2").status).toBe("pass");
    expect(one(good, "containerd-running").status).toBe("pass");
    expect(one(good, "containerd-handler")).toMatchObject({
      status: "pass",
      detail:
        "containerd (pid 1000) reads /etc/kata-sysextd/containerd.toml, which registers kata, kata-clh (io.containerd.kata.v2)",
    });
    const bad = await preflight({ cgroup: "hybrid", containerdRunning: false, containerdConfig: "version = 2\n" });
    expect(one(bad, "cgroup-v2").status).toBe("warn");
    expect(one(bad, "containerd-running").status).toBe("warn");
    expect(one(bad, "containerd-handler").status).toBe("fail");
    const missing = await preflight({ cgroup: "v1", containerdConfig: null });
    expect(one(missing, "cgroup-v2").detail).toBe("cgroup v1 only");
    expect(one(missing, "containerd-handler").status).toBe("warn");
    const unselected = await preflight({ unitDropIn: null });
    expect(one(unselected, "containerd-handler")).toMatchObject({ status: "warn" });
    expect(one(unselected, "containerd-handler").detail).toContain("no longer selects it");
    const stopped = await preflight({ containerdRunning: false, unitDropIn: null });
    expect(one(stopped, "containerd-handler").detail).toContain("does not select it");
  });

  it.each([
    {
      what: "the operator's ExecStart without --config: containerd reads its default, which has no Kata runtime",
      spec: { containerdArgv: ["/usr/bin/containerd"] },
      status: "fail",
      detail: /^containerd \(pid 1000\) reads \/etc\/containerd\/config\.toml, which is missing/,
    },
    {
      what: "a file of our own that another override replaced",
      spec: { containerdArgv: ["/usr/bin/containerd", "-c", "/etc/kata-sysextd/containerd.toml.bak"] },
      status: "fail",
      detail: /reads \/etc\/kata-sysextd\/containerd\.toml\.bak, which is missing/,
    },
    {
      what: "version 3 with the runtimes under the version 2 plugin, where containerd 2.x does not look",
      spec: { containerdConfig: CONTAINERD_CONFIG.replace("version = 2", "version = 3") },
      status: "fail",
      detail: /registers no runtime of type io\.containerd\.kata\.v2 where its version keeps them$/,
    },
    {
      what: "version 3 with the runtimes under io.containerd.cri.v1.runtime",
      spec: {
        containerdConfig: `version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata]\nruntime_type = "io.containerd.kata.v2"\n`,
      },
      status: "pass",
      detail: /which registers kata \(io\.containerd\.kata\.v2\)$/,
    },
  ])("containerd-handler judges what the running containerd reads: $what", async ({ spec, status, detail }) => {
    const r = one(await preflight(spec), "containerd-handler");
    expect(r.status).toBe(status);
    expect(r.detail).toMatch(detail);
  });
});

describe("confidential computing and the runtime handlers offered", () => {
  const CONTAINERD = { configFile: "/etc/kata-sysextd/containerd.toml", unitDropIn: "/etc/x.conf" };
  const TDX_HOST: HostSpec = { modules: { kvm: {}, kvm_intel: { nested: "Y", tdx: "Y" } } };
  const SNP_HOST: HostSpec = {
    cpu: "amd",
    modules: { kvm: {}, kvm_amd: { nested: "1", npt: "1", sev_snp: "Y" } },
    devices: ["/dev/vhost-vsock", "/dev/vhost-net", "/dev/net/tun", "/dev/sev"],
  };
  /** The preflight of a host with qemu, clh and their TDX and SNP variants shipped; `flags` added to cpuinfo. */
  async function run(spec: HostSpec, handlers: string[] | null = null, flags: string[] = []): Promise<PreflightReport> {
    const root = buildHost(spec);
    roots.push(root);
    buildPayload(root, { hypervisors: ["qemu", "clh"] });
    const defaults = join(root, "opt/kata/share/defaults/kata-containers");
    for (const v of ["tdx", "snp"]) writeFileSync(join(defaults, `configuration-qemu-${v}.toml`), CONFIGS.qemu.text);
    const cpuinfo = join(root, "proc/cpuinfo");
    writeFileSync(cpuinfo, readFileSync(cpuinfo, "utf8").replace(/^flags\s*:/m, `flags\t\t: ${flags.join(" ")}`));
    return runPreflight({ paths: hostPaths(root), containerd: { ...CONTAINERD, handlers } });
  }

  it.each([
    {
      what: "TDX host",
      spec: TDX_HOST,
      flags: ["tdx_host_platform"],
      pinned: null,
      status: "pass",
      detail: /^Intel TDX ready: kvm_intel tdx=Y, CPU flag tdx_host_platform$/,
    },
    {
      what: "TDX in KVM, not in firmware",
      spec: TDX_HOST,
      flags: [],
      pinned: null,
      status: "skip",
      detail: /not available: missing CPU flag tdx_host_platform$/,
    },
    {
      what: "plain Intel host with a pinned TDX handler",
      spec: {},
      flags: [],
      pinned: ["kata-qemu-tdx"],
      status: "fail",
      detail: /missing kvm_intel tdx=\(absent\), CPU flag tdx_host_platform; pinned handler kata-qemu-tdx needs it$/,
    },
    {
      what: "AMD host",
      spec: SNP_HOST,
      flags: [],
      pinned: null,
      status: "skip",
      detail: /for Intel CPUs; this one is AuthenticAMD$/,
    },
  ])("tdx: $what", async ({ spec, flags, pinned, status, detail }) => {
    const r = one(await run(spec, pinned, flags), "tdx");
    expect(r.status).toBe(status);
    expect(r.detail).toMatch(detail);
  });

  it.each([
    {
      what: "SEV-SNP host",
      spec: SNP_HOST,
      flags: ["sev_snp"],
      status: "pass",
      detail: /^AMD SEV-SNP ready: kvm_amd sev_snp=Y, \/dev\/sev, CPU flag sev_snp$/,
    },
    {
      what: "SEV-SNP host without /dev/sev",
      spec: { ...SNP_HOST, devices: ["/dev/vhost-vsock"] },
      flags: ["sev_snp"],
      status: "skip",
      detail: /not available: missing \/dev\/sev$/,
    },
    {
      what: "Intel host",
      spec: TDX_HOST,
      flags: [],
      status: "skip",
      detail: /for AMD CPUs; this one is GenuineIntel$/,
    },
  ])("sev-snp: $what", async ({ spec, flags, status, detail }) => {
    const r = one(await run(spec, null, flags), "sev-snp");
    expect(r.status).toBe(status);
    expect(r.detail).toMatch(detail);
  });

  it("runtime-handlers lists what is offered and why the rest is not; a pinned handler that cannot run fails", async () => {
    const plain = one(await run({}), "runtime-handlers");
    expect(plain.status).toBe("pass");
    expect(plain.detail).toMatch(/^offered: kata, kata-clh, kata-qemu; not offered: /);
    expect(plain.detail).toContain("kata-qemu-snp (AMD SEV-SNP needs an AMD CPU (this one is intel))");
    expect(plain.detail).toContain("kata-qemu-tdx (kvm_intel parameter tdx is absent, not Y)");
    const pinned = find(await run({}, ["kata-clh", "kata-qemu-tdx"]), "runtime-handlers");
    expect(pinned.map((c) => [c.status, c.detail])).toEqual([
      ["pass", expect.stringMatching(/^offered: kata-clh; not offered: kata \(not in \[containerd\] handlers\)/)],
      ["fail", "pinned handler kata-qemu-tdx cannot run here: kvm_intel parameter tdx is absent, not Y"],
    ]);
  });
});
