// A Kata image without its hypervisor, and a companion extension (the sysext-bakery's cloud-hypervisor) that
// ships it in /usr/bin: the preflight checks the companion's binary and says what Kata's configuration needs.
import { chmodSync, copyFileSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { hostPaths } from "../../../src/paths.ts";
import { runPreflight } from "../../../src/preflight/run.ts";
import { buildHost, buildPayload, CONFIGS, PATHS } from "../../fixtures/preflight/hosts.ts";
import { ensureHelpers, fakeVmm } from "../../fixtures/preflight/toolchain.ts";
import { CTL, NODE, runArgv } from "../../helpers/sandbox.ts";

beforeAll(() => ensureHelpers());

function hostWithoutClh(): string {
  const root = buildHost({});
  buildPayload(root, { hypervisors: ["clh"], omit: [PATHS.clh] });
  return root;
}

/** No CLH in the Kata image, and the companion's cloud-hypervisor binary merged at /usr/bin. */
function hostWithCompanionClh(): string {
  const root = hostWithoutClh();
  mkdirSync(join(root, "usr/bin"), { recursive: true });
  copyFileSync(
    fakeVmm("cloud-hypervisor", { version: "cloud-hypervisor v53.0" }),
    join(root, "usr/bin/cloud-hypervisor"),
  );
  chmodSync(join(root, "usr/bin/cloud-hypervisor"), 0o755);
  return root;
}

describe("preflight with a companion hypervisor extension", () => {
  it("runs the companion's binary and names the configuration change Kata needs", async () => {
    const root = hostWithCompanionClh();
    const r = await runPreflight({
      paths: hostPaths(root),
      companions: [
        { name: "cloud-hypervisor", files: ["usr/bin/cloud-hypervisor", "usr/share/cloud-hypervisor/VERSION"] },
      ],
    });
    const check = r.checks.find((c) => c.id === "hypervisor-binary" && c.hypervisor === "clh");
    expect(check).toMatchObject({
      status: "fail",
      detail: `${PATHS.clh} is not in the Kata image; companion cloud-hypervisor ships /usr/bin/cloud-hypervisor (cloud-hypervisor v53.0)`,
      remedy:
        'put a copy of /opt/kata/share/defaults/kata-containers/configuration-clh.toml at /etc/kata-containers/configuration.toml with path = "/usr/bin/cloud-hypervisor" under [hypervisor.clh]: the kata runtime handler runs with that file whenever it exists',
    });
  });

  it("once the kata handler runs with /etc/kata-containers/configuration.toml, the remedy edits that file", async () => {
    const root = hostWithCompanionClh();
    mkdirSync(join(root, "etc/kata-containers"), { recursive: true });
    copyFileSync(join(root, CONFIGS.clh.file), join(root, "etc/kata-containers/configuration.toml"));
    const r = await runPreflight({
      paths: hostPaths(root),
      companions: [{ name: "cloud-hypervisor", files: ["usr/bin/cloud-hypervisor"] }],
    });
    const check = r.checks.find((c) => c.id === "hypervisor-binary" && c.hypervisor === "clh");
    expect(check?.remedy).toBe(
      'set path = "/usr/bin/cloud-hypervisor" under [hypervisor.clh] in /etc/kata-containers/configuration.toml',
    );
  });

  it("kata-sysextctl preflight finds the active companion from the configuration and the store, as the daemon does", async () => {
    const root = hostWithCompanionClh();
    // The companion as the daemon leaves it: a stored image with its record, and the active link to it.
    const file = "cloud-hypervisor-v53.0-x86-64.raw";
    const store = join(root, "var/lib/kata-sysextd/images");
    mkdirSync(store, { recursive: true });
    writeFileSync(join(store, file), "");
    writeFileSync(
      join(store, `${file}.json`),
      JSON.stringify({ file, name: "cloud-hypervisor", version: "v53.0", files: ["usr/bin/cloud-hypervisor"] }),
    );
    mkdirSync(join(root, "etc/extensions"), { recursive: true });
    symlinkSync(`../../var/lib/kata-sysextd/images/${file}`, join(root, "etc/extensions/cloud-hypervisor.raw"));
    mkdirSync(join(root, "etc/kata-sysextd"), { recursive: true });
    writeFileSync(
      join(root, "etc/kata-sysextd/config.toml"),
      '[source]\nurl = "https://example.org/"\n[[companion]]\nname = "cloud-hypervisor"\nversions = ">=51.0"\n',
    );
    const ran = await runArgv([NODE, CTL, "preflight", "--root", root, "--json"]);
    const report = JSON.parse(ran.stdout) as { checks: { id: string; hypervisor?: string; detail: string }[] };
    const check = report.checks.find((c) => c.id === "hypervisor-binary" && c.hypervisor === "clh");
    expect(check?.detail).toContain("companion cloud-hypervisor ships /usr/bin/cloud-hypervisor");
  });

  it("without a companion, the missing binary is reported as missing", async () => {
    const r = await runPreflight({ paths: hostPaths(hostWithoutClh()), companions: [] });
    const check = r.checks.find((c) => c.id === "hypervisor-binary" && c.hypervisor === "clh");
    expect(check).toMatchObject({ status: "fail", detail: `${PATHS.clh} does not exist` });
  });
});
