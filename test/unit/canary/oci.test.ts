// The canary's OCI layout: byte for byte the same for the same program, readable back, and what ctr imports.
import { describe, expect, it } from "vitest";
import { CANARY_IMAGE_NAME, canaryLayout, layoutRef, tarArchive, tarFiles } from "../../../src/canary/oci.ts";

const program = Buffer.from("\x7fELF not really, but bytes all the same");

describe("canaryLayout", () => {
  it("gives the same bytes for the same program, and others for another", () => {
    const a = canaryLayout(program);
    expect(canaryLayout(Buffer.from(program)).tar.equals(a.tar)).toBe(true);
    expect(canaryLayout(Buffer.from("another program")).tar.equals(a.tar)).toBe(false);
  });

  it("is an OCI image layout whose index names the image by its manifest digest", () => {
    const layout = canaryLayout(program);
    const files = tarFiles(layout.tar);
    expect([...files.keys()]).toEqual([
      ...[...files.keys()].filter((k) => k.startsWith("blobs/")).sort(),
      "index.json",
      "oci-layout",
    ]);
    expect(JSON.parse(files.get("oci-layout")?.toString() ?? "")).toEqual({ imageLayoutVersion: "1.0.0" });
    expect(layout.ref).toBe(`${CANARY_IMAGE_NAME}:${layout.manifestDigest.slice(7, 19)}`);
    expect(layoutRef(layout.tar, "canary.oci.tar")).toBe(layout.ref);
    const manifest = JSON.parse(files.get(`blobs/sha256/${layout.manifestDigest.slice(7)}`)?.toString() ?? "");
    const layerDigest: string = manifest.layers[0].digest;
    const layer = files.get(`blobs/sha256/${layerDigest.slice(7)}`);
    expect(layer && tarFiles(layer).get("canary")?.equals(program)).toBe(true);
  });

  it("writes ustar headers that tar accepts: checksum, sizes, time 0, owner root", () => {
    const tar = tarArchive([
      { path: "a/", mode: 0o755 },
      { path: "a/b", mode: 0o644, content: Buffer.from("hi") },
    ]);
    expect(tar.length).toBe(512 * 5); // two headers, one data block, two end blocks
    const header = tar.subarray(512, 1024);
    const sum = header.reduce((acc, byte, i) => acc + (i >= 148 && i < 156 ? 32 : byte), 0);
    expect(Number.parseInt(header.subarray(148, 154).toString(), 8)).toBe(sum);
    expect(header.subarray(136, 147).toString()).toBe("00000000000");
    expect(header.subarray(265, 269).toString()).toBe("root");
    expect(tarFiles(tar).get("a/b")?.toString()).toBe("hi");
  });

  it.each([
    ["not a layout", tarArchive([{ path: "x", mode: 0o644, content: Buffer.from("x") }])],
    [
      "an index without a name",
      tarArchive([{ path: "index.json", mode: 0o644, content: Buffer.from('{"manifests":[{}]}') }]),
    ],
    ["an index that is not JSON", tarArchive([{ path: "index.json", mode: 0o644, content: Buffer.from("{") }])],
  ])("refuses %s with a message naming the file", (_what, tar) => {
    expect(() => layoutRef(tar, "/usr/lib/kata-sysextd/canary.oci.tar")).toThrow(
      "/usr/lib/kata-sysextd/canary.oci.tar is not an OCI image layout with a named image",
    );
  });
});
