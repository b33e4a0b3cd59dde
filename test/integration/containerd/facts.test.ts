// Handler selection over fixture host trees (read under --root, as on a host): a TDX host, an SEV-SNP host, a
// plain host, with and without the devmapper snapshotter; the payload's hypervisors are real ELF files judged by
// the ABI check, and each handler's Kata configuration is read with its config.d drop-ins.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { handlerFacts, hostFacts } from "../../../src/containerd/facts.ts";
import { runtimeHandlers } from "../../../src/containerd/handlers.ts";
import { selectHandlers } from "../../../src/containerd/selection.ts";
import { hostPaths } from "../../../src/paths.ts";
import { buildHost, buildPayload, CONFIGS, type HostSpec } from "../../fixtures/preflight/hosts.ts";
import { ensureHelpers, scratch } from "../../fixtures/preflight/toolchain.ts";

const D = "opt/kata/share/defaults/kata-containers";
const roots: string[] = [];
beforeAll(() => ensureHelpers());
afterAll(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
  rmSync(scratch(), { recursive: true, force: true });
});

const TDX_FLAG = (root: string) => {
  const cpuinfo = join(root, "proc/cpuinfo");
  writeFileSync(cpuinfo, readFileSync(cpuinfo, "utf8").replace(/^flags\s*:/m, "flags\t\t: tdx_host_platform"));
};

/** A host with qemu, clh and firecracker shipped, plus the TDX and SNP variants kata-deploy ships. */
function host(spec: HostSpec, extra: (root: string) => void = () => undefined): string {
  const root = buildHost(spec);
  roots.push(root);
  buildPayload(root, { hypervisors: ["qemu", "clh", "firecracker"] });
  for (const variant of ["tdx", "snp"]) {
    writeFileSync(join(root, D, `configuration-qemu-${variant}.toml`), CONFIGS.qemu.text);
  }
  extra(root);
  return root;
}

async function registered(root: string, devmapper = false): Promise<Record<string, string | null>> {
  const paths = hostPaths(root);
  const shipped = [...["qemu", "clh", "fc", "qemu-tdx", "qemu-snp"].map((h) => `${D}/configuration-${h}.toml`)];
  const facts = await handlerFacts(await runtimeHandlers(shipped, paths.host), { hostRoot: root, payloadRoot: root });
  const verdicts = selectHandlers(facts, await hostFacts(paths.host, devmapper), null);
  return Object.fromEntries(verdicts.map((v) => [v.name, v.reason]));
}

describe("handler selection over fixture hosts", () => {
  it.each([
    {
      what: "plain Intel host, no devmapper",
      root: () => host({}),
      devmapper: false,
      expected: {
        kata: null,
        "kata-clh": null,
        "kata-qemu": null,
        "kata-fc": expect.stringContaining("devmapper"),
        "kata-qemu-tdx": "kvm_intel parameter tdx is absent, not Y",
        "kata-qemu-snp": "AMD SEV-SNP needs an AMD CPU (this one is intel)",
      },
    },
    {
      what: "plain host with devmapper",
      root: () => host({}),
      devmapper: true,
      expected: { "kata-fc": null },
    },
    {
      what: "TDX host",
      root: () => host({ modules: { kvm: {}, kvm_intel: { nested: "Y", tdx: "Y" } } }, TDX_FLAG),
      devmapper: false,
      expected: { "kata-qemu-tdx": null, "kata-qemu-snp": expect.stringContaining("AMD CPU") },
    },
    {
      what: "TDX enabled in KVM but not in firmware",
      root: () => host({ modules: { kvm: {}, kvm_intel: { tdx: "Y" } } }),
      devmapper: false,
      expected: { "kata-qemu-tdx": expect.stringContaining("tdx_host_platform") },
    },
    {
      what: "SEV-SNP host",
      root: () =>
        host({
          cpu: "amd",
          modules: { kvm: {}, kvm_amd: { nested: "1", sev: "Y", sev_snp: "Y" } },
          devices: ["/dev/vhost-vsock", "/dev/sev"],
        }),
      devmapper: false,
      expected: { "kata-qemu-snp": null, "kata-qemu-tdx": expect.stringContaining("Intel CPU") },
    },
    {
      what: "SEV-SNP host without /dev/sev",
      root: () => host({ cpu: "amd", modules: { kvm: {}, kvm_amd: { sev_snp: "Y" } } }),
      devmapper: false,
      expected: { "kata-qemu-snp": "no /dev/sev (the AMD secure processor device)" },
    },
    {
      what: "a config.d drop-in pointing Cloud Hypervisor at a binary that is not there",
      root: () =>
        host({}, (root) => {
          mkdirSync(join(root, D, "config.d"), { recursive: true });
          writeFileSync(
            join(root, D, "config.d/50-clh.toml"),
            '[hypervisor.clh]\npath = "/opt/kata/bin/clh-missing"\n',
          );
        }),
      devmapper: false,
      expected: {
        kata: "hypervisor /opt/kata/bin/clh-missing: missing",
        "kata-clh": "hypervisor /opt/kata/bin/clh-missing: missing",
        "kata-qemu": null,
      },
    },
  ])("$what", async ({ root, devmapper, expected }) => {
    expect(await registered(root(), devmapper)).toMatchObject(expected);
  });
});
