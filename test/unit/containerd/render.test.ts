// The merge of Kata's runtimes into each configuration version, in that version's own schema, keeping every key
// the operator wrote. The version 3 fixture is containerd 2.x's documented full configuration.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "smol-toml";
import { describe, expect, it } from "vitest";
import type { RuntimeHandler } from "../../../src/containerd/handlers.ts";
import { renderContainerdConfig } from "../../../src/containerd/registration.ts";
import { devmapperIn, lookup, type Table } from "../../../src/containerd/schema.ts";

const FIXTURES = join(import.meta.dirname, "../../fixtures/containerd");
const fixture = (name: string) => readFileSync(join(FIXTURES, name), "utf8");
const D = "/opt/kata/share/defaults/kata-containers";
const HANDLERS: RuntimeHandler[] = [
  { name: "kata", configPath: `${D}/configuration-clh.toml` },
  { name: "kata-fc", configPath: `${D}/configuration-fc.toml`, snapshotter: "devmapper" },
];

/** Every leaf of a document as "a.b.c" = value, to compare what the base had with what we wrote. */
function leaves(doc: unknown, prefix = ""): Map<string, unknown> {
  const out = new Map<string, unknown>();
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    out.set(prefix, doc);
    return out;
  }
  for (const [k, v] of Object.entries(doc))
    for (const [p, x] of leaves(v, `${prefix}${prefix ? "." : ""}${k}`)) out.set(p, x);
  return out;
}

describe("renderContainerdConfig", () => {
  it.each([
    {
      base: "flatcar-v2.toml",
      version: 2,
      runtimes: ["plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes"],
      absent: ["plugins", "io.containerd.cri.v1.runtime"],
    },
    {
      base: "v3-default.toml",
      version: 3,
      runtimes: ["plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes"],
      absent: ["plugins", "io.containerd.grpc.v1.cri", "containerd"],
    },
    {
      base: "v1-noversion.toml",
      version: undefined,
      runtimes: ["plugins", "cri", "containerd", "runtimes"],
      absent: ["plugins", "io.containerd.grpc.v1.cri"],
    },
  ])("$base: runtimes under $runtimes, version kept, every base key kept", ({ base, version, runtimes, absent }) => {
    const baseText = fixture(base);
    const out = parse(renderContainerdConfig(baseText, HANDLERS, `/x/${base}`)) as Table;
    expect(out.version).toBe(version);
    const table = lookup(out, runtimes);
    expect(table?.kata).toEqual({
      runtime_type: "io.containerd.kata.v2",
      privileged_without_host_devices: true,
      pod_annotations: ["io.katacontainers.*"],
      options: { ConfigPath: `${D}/configuration-clh.toml` },
    });
    expect(table?.["kata-fc"]).toMatchObject({ snapshotter: "devmapper" });
    expect(table?.runc).toBeDefined();
    // Nothing written into another version's schema, where containerd would not look.
    expect(lookup(out, absent)).toBeUndefined();
    const before = leaves(parse(baseText));
    const after = leaves(out);
    for (const [key, value] of before) expect([key, after.get(key)]).toEqual([key, value]);
  });

  it.each([
    { text: "version = 4\n", why: "version 4 is none of 1 (no version), 2 or 3" },
    { text: 'version = "2"\n', why: 'version "2" is none of' },
    { text: "[plugins\n", why: "is not valid TOML" },
    {
      text: 'version = 2\n[plugins]\n"io.containerd.grpc.v1.cri" = 5\n',
      why: "plugins.io.containerd.grpc.v1.cri is a number",
    },
  ])("refuses $text naming the file: $why", ({ text, why }) => {
    expect(() => renderContainerdConfig(text, HANDLERS, "/etc/containerd/config.toml")).toThrow(
      expect.objectContaining({
        code: "containerd-failed",
        message: expect.stringMatching(new RegExp(`^/etc/containerd/config.toml.*${why.replace(/[.()"]/g, "\\$&")}`)),
      }),
    );
  });
});

describe("devmapperIn", () => {
  const pool = (plugin: string) => `[plugins.${plugin}]\npool_name = "containerd-pool"\nroot_path = "/var/lib/dm"\n`;
  it.each([
    { text: `version = 2\n${pool('"io.containerd.snapshotter.v1.devmapper"')}`, set: true },
    { text: `version = 3\n${pool("'io.containerd.snapshotter.v1.devmapper'")}`, set: true },
    { text: pool("devmapper"), set: true },
    { text: `version = 2\n${pool("devmapper")}`, set: false }, // a short ID is version 1's, not read by version 2
    { text: 'version = 2\n[plugins."io.containerd.snapshotter.v1.devmapper"]\npool_name = ""\n', set: false },
    { text: fixture("flatcar-v2.toml"), set: false },
    { text: "[plugins\n", set: false },
  ])("$text -> $set", ({ text, set }) => {
    expect(devmapperIn(text)).toBe(set);
  });
});
