// Handler selection as a pure decision: which shipped handlers a host can run, over fixture facts for a TDX host,
// an SEV-SNP host, a plain host, one with the devmapper snapshotter and one with a GPU, and with a pinned list.
import { describe, expect, it } from "vitest";
import { type HandlerFacts, type HostFacts, needsOf, selectHandlers } from "../../../src/containerd/selection.ts";

const D = "/opt/kata/share/defaults/kata-containers";
const handler = (name: string, hypervisor: string, extra: Partial<HandlerFacts> = {}): HandlerFacts => ({
  name,
  configPath: `${D}/configuration-${name.replace(/^kata-?/, "") || "clh"}.toml`,
  hypervisor,
  configProblem: null,
  binary: { path: `/opt/kata/bin/${hypervisor}`, problem: null },
  ...needsOf(name, {}),
  ...extra,
});

const SHIPPED: HandlerFacts[] = [
  handler("kata", "clh"),
  handler("kata-clh", "clh"),
  handler("kata-qemu", "qemu"),
  handler("kata-fc", "firecracker"),
  handler("kata-qemu-tdx", "qemu"),
  handler("kata-qemu-snp", "qemu"),
  handler("kata-qemu-sev", "qemu"),
  handler("kata-qemu-nvidia-gpu", "qemu"),
  handler("kata-qemu-nvidia-gpu-snp", "qemu"),
  handler("kata-qemu-coco-dev", "qemu"),
];

const PLAIN: HostFacts = {
  cpuVendor: "intel",
  cpuFlags: ["vmx", "lm"],
  kvm: true,
  vhostVsock: true,
  devmapper: false,
  params: { tdx: null, sevSnp: null, sev: null },
  devSev: false,
  vfioGroups: 0,
  nvidia: false,
};
const TDX: HostFacts = { ...PLAIN, cpuFlags: ["vmx", "tdx_host_platform"], params: { ...PLAIN.params, tdx: "Y" } };
const SNP: HostFacts = {
  ...PLAIN,
  cpuVendor: "amd",
  cpuFlags: ["svm", "sev", "sev_snp"],
  params: { tdx: null, sevSnp: "Y", sev: "Y" },
  devSev: true,
};
const COMMON = ["kata", "kata-clh", "kata-qemu", "kata-qemu-coco-dev"];

describe("selectHandlers", () => {
  it.each([
    { host: "plain Intel host", facts: PLAIN, registered: COMMON },
    { host: "plain host with devmapper", facts: { ...PLAIN, devmapper: true }, registered: [...COMMON, "kata-fc"] },
    { host: "TDX host", facts: TDX, registered: [...COMMON, "kata-qemu-tdx"] },
    {
      host: "SEV-SNP host with a VFIO group",
      facts: { ...SNP, vfioGroups: 1 },
      registered: [...COMMON, "kata-qemu-snp", "kata-qemu-sev", "kata-qemu-nvidia-gpu", "kata-qemu-nvidia-gpu-snp"],
    },
    {
      host: "plain host with /dev/nvidia0",
      facts: { ...PLAIN, nvidia: true },
      registered: [...COMMON, "kata-qemu-nvidia-gpu"],
    },
    { host: "host without /dev/kvm", facts: { ...PLAIN, kvm: false }, registered: [] },
    { host: "host without /dev/vhost-vsock", facts: { ...PLAIN, vhostVsock: false }, registered: ["kata", "kata-clh"] },
  ])("$host registers $registered", ({ facts, registered }) => {
    const verdicts = selectHandlers(SHIPPED, facts, null);
    expect(
      verdicts
        .filter((v) => v.registered)
        .map((v) => v.name)
        .sort(),
    ).toEqual([...registered].sort());
    // Every handler left out says why.
    for (const v of verdicts.filter((x) => !x.registered)) expect(v.reason).toMatch(/\S/);
  });

  it.each([
    { name: "kata-fc", facts: PLAIN, reason: /devmapper snapshotter/ },
    { name: "kata-qemu-tdx", facts: SNP, reason: /Intel TDX needs an Intel CPU \(this one is amd\)/ },
    { name: "kata-qemu-tdx", facts: PLAIN, reason: /kvm_intel parameter tdx is absent, not Y/ },
    { name: "kata-qemu-tdx", facts: { ...TDX, cpuFlags: ["vmx"] }, reason: /CPU flag tdx_host_platform is missing/ },
    { name: "kata-qemu-snp", facts: TDX, reason: /AMD SEV-SNP needs an AMD CPU/ },
    { name: "kata-qemu-snp", facts: { ...SNP, params: { ...SNP.params, sevSnp: "N" } }, reason: /sev_snp is N, not Y/ },
    { name: "kata-qemu-snp", facts: { ...SNP, devSev: false }, reason: /no \/dev\/sev/ },
    {
      name: "kata-qemu-sev",
      facts: { ...SNP, params: { ...SNP.params, sev: null } },
      reason: /kvm_amd parameter sev is absent/,
    },
    { name: "kata-qemu-nvidia-gpu", facts: PLAIN, reason: /no VFIO group under \/dev\/vfio and no \/dev\/nvidia/ },
  ])("$name is left out with the missing piece: $reason", ({ name, facts, reason }) => {
    const verdict = selectHandlers(SHIPPED, facts, null).find((v) => v.name === name);
    expect(verdict).toMatchObject({ registered: false });
    expect(verdict?.reason).toMatch(reason);
  });

  it("judges the binary and the configuration before the host", () => {
    const verdicts = selectHandlers(
      [
        handler("kata-clh", "clh", { binary: { path: "/opt/kata/bin/cloud-hypervisor", problem: "missing" } }),
        handler("kata-qemu", "qemu", {
          configProblem: "its Kata configuration cannot be read: x.toml:3: not valid TOML",
        }),
        handler("kata-remote", "remote", { binary: null }),
      ],
      { ...PLAIN, kvm: false },
      null,
    );
    expect(verdicts.map((v) => [v.name, v.reason])).toEqual([
      ["kata-clh", "hypervisor /opt/kata/bin/cloud-hypervisor: missing"],
      ["kata-qemu", "its Kata configuration cannot be read: x.toml:3: not valid TOML"],
      ["kata-remote", null], // peer pods need nothing of this host
    ]);
  });

  it("registers Firecracker with the devmapper snapshotter", () => {
    const fc = selectHandlers(SHIPPED, { ...PLAIN, devmapper: true }, null).find((v) => v.name === "kata-fc");
    expect(fc).toMatchObject({ registered: true, snapshotter: "devmapper" });
  });

  it("a pinned list registers only what it names and keeps the reason of a pinned handler that cannot run", () => {
    const verdicts = selectHandlers(SHIPPED, PLAIN, ["kata-clh", "kata-qemu-tdx", "kata-stratovirt"]);
    const by = new Map(verdicts.map((v) => [v.name, v]));
    expect(by.get("kata-clh")).toMatchObject({ registered: true, pinned: true });
    expect(by.get("kata-qemu-tdx")).toMatchObject({
      registered: false,
      pinned: true,
      reason: expect.stringContaining("tdx"),
    });
    expect(by.get("kata-qemu")).toMatchObject({
      registered: false,
      pinned: false,
      reason: "not in [containerd] handlers",
    });
    expect(by.get("kata-stratovirt")).toMatchObject({
      registered: false,
      pinned: true,
      configPath: null,
      reason: "the active Kata image ships no configuration for it",
    });
  });
});

describe("needsOf", () => {
  it.each([
    { name: "kata-qemu-tdx", table: {}, needs: { confidential: "tdx", gpu: false } },
    { name: "kata-qemu-nvidia-gpu-snp", table: {}, needs: { confidential: "snp", gpu: true } },
    { name: "kata", table: { sev_snp_guest: true }, needs: { confidential: "snp", gpu: false } },
    { name: "kata-qemu-coco-dev", table: { confidential_guest: true }, needs: { confidential: null, gpu: false } },
  ])("$name", ({ name, table, needs }) => {
    expect(needsOf(name, table)).toEqual(needs);
  });
});
