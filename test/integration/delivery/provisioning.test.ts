// config/butane.yaml and config/ignition.json: the Ignition JSON is what the Butane source compiles to, it is
// valid Ignition 3.x (JSON schema of the spec's subset it uses, checked with ajv), and what it writes is what
// the daemon's own parsers accept.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config/load.ts";
import { imageFileName, SYSEXT_NAME } from "../../../src/delivery/layout.ts";
import {
  butaneToIgnition,
  decodeDataUrl,
  FLATCAR_VARIANT,
  type IgnitionConfig,
  IMAGE_PATH,
  imageBaseUrl,
  percentEncode,
  withImage,
} from "../../../src/delivery/provisioning.ts";
import { PROJECT } from "../../helpers/sandbox.ts";
import { VERSION } from "./build.ts";
import { etcFilesOf, validateIgnition as validate } from "./ignition.ts";

const butane = readFileSync(join(PROJECT, "config/butane.yaml"), "utf8");
const ignition = JSON.parse(readFileSync(join(PROJECT, "config/ignition.json"), "utf8")) as IgnitionConfig;

describe("config/butane.yaml -> config/ignition.json", () => {
  it("compiles to exactly the committed Ignition config", () => {
    expect(butaneToIgnition(butane)).toEqual(ignition);
  });

  it("reads modes as Butane does (YAML 1.1 octal), and refuses keys outside the converter's subset", () => {
    expect(ignition.storage?.files?.every((f) => f.mode === 0o644)).toBe(true);
    expect(() => butaneToIgnition(`${butane}passwd:\n  users: []\n`)).toThrow(/key "passwd"/);
    expect(() => butaneToIgnition(butane.replace("variant: flatcar", "variant: fcos"))).toThrow(/variant/);
  });

  it("encodes inline contents as data URLs that decode to the same text", () => {
    const text = '[api]\nlisten = "127.0.0.1:8720" # ünïcode, 100%\n';
    expect(decodeDataUrl(`data:,${percentEncode(text)}`).toString("utf8")).toBe(text);
    expect(decodeDataUrl(`data:;base64,${Buffer.from(text).toString("base64")}`).toString("utf8")).toBe(text);
  });
});

describe("the Ignition spec version they declare", () => {
  it("is the one Butane's variant version emits, and one the schema was written for", () => {
    const variant = /^version: (\S+)$/m.exec(butane)?.[1] ?? "";
    expect(FLATCAR_VARIANT[variant]).toBe(ignition.ignition.version);
    const schema = JSON.parse(readFileSync(join(import.meta.dirname, "ignition-3.schema.json"), "utf8")) as {
      properties: { ignition: { properties: { version: { pattern: string } } } };
    };
    expect(ignition.ignition.version).toMatch(new RegExp(schema.properties.ignition.properties.version.pattern));
  });
});

describe("withImage: the provisioning the build writes beside its image", () => {
  const sha256 = "ab".repeat(32);
  const url = "https://releases.example.org/kata-sysextd/kata-sysextd-9.9.9-x86-64.raw";

  it("changes the image's source and hash and nothing else, comments included", () => {
    const text = withImage(butane, { url, sha256 });
    const changed = text.split("\n").filter((line, i) => line !== butane.split("\n")[i]);
    expect(changed).toEqual([`        source: ${url}`, `          hash: sha256-${sha256}`]);
    const compiled = butaneToIgnition(text);
    const expected = structuredClone(ignition);
    const image = expected.storage?.files?.find((f) => f.path === IMAGE_PATH);
    if (image === undefined) throw new Error("config/ignition.json installs no image");
    image.contents = { source: url, verification: { hash: `sha256-${sha256}` } };
    expect(compiled).toEqual(expected);
    expect(validate(compiled), JSON.stringify(validate.errors)).toBe(true);
  });

  it("refuses a digest that is not SHA-256 hex, and a Butane text without the image entry", () => {
    expect(() => withImage(butane, { url, sha256: "abc" })).toThrow(/64 hex digits/);
    const other = butane.replaceAll(IMAGE_PATH, "/etc/extensions/other.raw");
    expect(() => withImage(other, { url, sha256 })).toThrow(`no storage.files entry with path ${IMAGE_PATH}`);
  });

  it("takes the directory the image is published in from config/butane.yaml", () => {
    const source = ignition.storage?.files?.find((f) => f.path === IMAGE_PATH)?.contents.source ?? "";
    expect(imageBaseUrl(butane)).toBe(source.slice(0, source.lastIndexOf("/") + 1));
    expect(imageBaseUrl(butane)).toMatch(/^https:\/\/.+\/$/);
  });
});

describe("config/ignition.json", () => {
  it("is valid against the Ignition 3.x schema", () => {
    expect(validate(ignition), JSON.stringify(validate.errors)).toBe(true);
    expect(ignition.ignition.version).toBe("3.4.0");
  });

  it("the schema has teeth: unknown keys, bad hashes, relative paths and bad unit names fail", () => {
    const bad = (mutate: (c: IgnitionConfig & Record<string, unknown>) => void): boolean => {
      const copy = structuredClone(ignition) as IgnitionConfig & Record<string, unknown>;
      mutate(copy);
      return validate(copy);
    };
    expect(bad((c) => Object.assign(c, { stroage: {} }))).toBe(false);
    expect(bad((c) => Object.assign(c.ignition, { version: "2.3.0" }))).toBe(false);
    expect(
      bad((c) => {
        const f = c.storage?.files?.[0];
        if (f) f.contents.verification = { hash: "sha256-nothex" };
      }),
    ).toBe(false);
    expect(
      bad((c) => {
        const l = c.storage?.links?.[0];
        if (l) l.path = "etc/systemd/system/x.service";
      }),
    ).toBe(false);
    expect(
      bad((c) => {
        const u = c.systemd?.units?.[0];
        if (u) u.name = "bootstrap";
      }),
    ).toBe(false);
  });

  it("installs the image as a regular file with a sha256 verification, named like the build's output", () => {
    const image = ignition.storage?.files?.find((f) => f.path === `/etc/extensions/${SYSEXT_NAME}.raw`);
    expect(image?.contents.source.endsWith(`/${imageFileName(VERSION)}`)).toBe(true);
    expect(image?.contents.verification?.hash).toMatch(/^sha256-[0-9a-f]{64}$/);
    expect(ignition.storage?.links?.some((l) => l.path.startsWith("/etc/extensions/"))).toBe(false);
  });

  it("writes a configuration the daemon's own parser accepts, with the API on loopback", () => {
    const file = ignition.storage?.files?.find((f) => f.path === "/etc/kata-sysextd/config.toml");
    const config = parseConfig(
      decodeDataUrl(file?.contents.source ?? "").toString("utf8"),
      "/etc/kata-sysextd/config.toml",
    );
    expect(config.api).toEqual({ listen: "127.0.0.1:8720", enabled: true });
    expect(config.source.name).toBe("kata-containers");
  });

  it("enables the units the image ships (links into /usr) and a bootstrap unit that runs after systemd-sysext", () => {
    const links = ignition.storage?.links ?? [];
    const shipped = ["kata-sysextd.service", "kata-sysextd-boot.service"];
    for (const unit of shipped) {
      expect(links).toContainEqual({
        path: `/etc/systemd/system/multi-user.target.wants/${unit}`,
        hard: false,
        target: `/usr/lib/systemd/system/${unit}`,
      });
      expect(readFileSync(join(PROJECT, "units", unit), "utf8")).toContain("WantedBy=multi-user.target");
    }
    const etc = etcFilesOf(ignition, () => Buffer.from("image"));
    expect(etc["systemd/system/multi-user.target.wants/kata-sysextd-bootstrap.service"]).toEqual({
      symlink: "/etc/systemd/system/kata-sysextd-bootstrap.service",
    });
    const bootstrap = String(etc["systemd/system/kata-sysextd-bootstrap.service"]);
    expect(bootstrap).toMatch(/^After=systemd-sysext\.service$/m);
    expect(bootstrap).toMatch(/^ExecStart=\/usr\/bin\/systemctl daemon-reload$/m);
    expect(bootstrap).toMatch(/^ExecStart=-\/usr\/bin\/systemctl start kata-sysextd-boot\.service$/m);
    expect(bootstrap).toMatch(/^ExecStart=\/usr\/bin\/systemctl start --no-block kata-sysextd\.service$/m);
  });
});
