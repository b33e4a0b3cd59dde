import { describe, expect, it } from "vitest";
import { kataHandlers } from "../../../src/containerd/registration.ts";

const D = "opt/kata/share/defaults/kata-containers";

describe("kataHandlers", () => {
  it("names one handler per shipped configuration, kata-deploy style, plus the default kata", () => {
    expect(
      kataHandlers([`${D}/configuration-qemu.toml`, `${D}/configuration-clh.toml`, "opt/kata/bin/cloud-hypervisor"]),
    ).toEqual([
      { name: "kata", configPath: `/${D}/configuration-clh.toml` },
      { name: "kata-clh", configPath: `/${D}/configuration-clh.toml` },
      { name: "kata-qemu", configPath: `/${D}/configuration-qemu.toml` },
    ]);
  });

  it("prefers configuration.toml for the default handler", () => {
    expect(kataHandlers([`${D}/configuration.toml`, `${D}/configuration-fc.toml`])[0]).toEqual({
      name: "kata",
      configPath: `/${D}/configuration.toml`,
    });
  });

  it("ignores files outside the defaults directory and odd names", () => {
    expect(
      kataHandlers([`${D}/sub/configuration-x.toml`, `${D}/configuration-X!.toml`, "etc/configuration.toml"]),
    ).toEqual([]);
  });
});
