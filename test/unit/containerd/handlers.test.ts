import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { KATA_ETC_CONFIG, kataHandlers, runtimeHandlers } from "../../../src/containerd/handlers.ts";
import { hostPaths } from "../../../src/paths.ts";

const D = "opt/kata/share/defaults/kata-containers";
const SHIPPED = [`${D}/configuration-qemu.toml`, `${D}/configuration-clh.toml`, "opt/kata/bin/cloud-hypervisor"];
const noEtc = { etcConfig: false };

describe("kataHandlers", () => {
  it("names one handler per shipped configuration, kata-deploy style, plus the default kata", () => {
    expect(kataHandlers(SHIPPED, noEtc)).toEqual([
      { name: "kata", configPath: `/${D}/configuration-clh.toml` },
      { name: "kata-clh", configPath: `/${D}/configuration-clh.toml` },
      { name: "kata-qemu", configPath: `/${D}/configuration-qemu.toml` },
    ]);
  });

  it("prefers configuration.toml for the default handler", () => {
    expect(kataHandlers([`${D}/configuration.toml`, `${D}/configuration-fc.toml`], noEtc)[0]).toEqual({
      name: "kata",
      configPath: `/${D}/configuration.toml`,
    });
  });

  it("runs the default handler with the operator's /etc configuration when there is one; the others keep theirs", () => {
    expect(kataHandlers(SHIPPED, { etcConfig: true })).toEqual([
      { name: "kata", configPath: "/etc/kata-containers/configuration.toml" },
      { name: "kata-clh", configPath: `/${D}/configuration-clh.toml` },
      { name: "kata-qemu", configPath: `/${D}/configuration-qemu.toml` },
    ]);
    // A shipped configuration.toml has no handler of its own: /etc replaces it for "kata".
    expect(kataHandlers([`${D}/configuration.toml`], { etcConfig: true })).toEqual([
      { name: "kata", configPath: KATA_ETC_CONFIG },
    ]);
  });

  it("ignores files outside the defaults directory and odd names", () => {
    expect(
      kataHandlers([`${D}/sub/configuration-x.toml`, `${D}/configuration-X!.toml`, "etc/configuration.toml"], noEtc),
    ).toEqual([]);
  });
});

describe("runtimeHandlers", () => {
  const scratch = mkdtempSync(join(tmpdir(), "kata-handlers-"));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));
  const kata = async (root: string) => (await runtimeHandlers(SHIPPED, hostPaths(root).host))[0]?.configPath;

  it("looks for /etc/kata-containers/configuration.toml under the root, following symlinks as Kata does", async () => {
    const root = join(scratch, "root");
    const etc = join(root, "etc/kata-containers");
    mkdirSync(etc, { recursive: true });
    expect(await kata(root)).toBe(`/${D}/configuration-clh.toml`);

    writeFileSync(join(etc, "configuration.toml"), "[hypervisor.qemu]\n");
    expect(await kata(root)).toBe(KATA_ETC_CONFIG);

    // A dangling link is no configuration for Kata's own lookup either.
    rmSync(join(etc, "configuration.toml"));
    symlinkSync(join(root, "missing.toml"), join(etc, "configuration.toml"));
    expect(await kata(root)).toBe(`/${D}/configuration-clh.toml`);
    writeFileSync(join(root, "missing.toml"), "[hypervisor.qemu]\n");
    expect(await kata(root)).toBe(KATA_ETC_CONFIG);
  });
});
