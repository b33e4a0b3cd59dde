import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig, parseConfig } from "../../../src/config/load.ts";
import { DEFAULTS } from "../../../src/config/schema.ts";
import { KataError } from "../../../src/errors.ts";

const FILE = "/etc/kata-sysextd/config.toml";

function errorOf(text: string): KataError {
  try {
    parseConfig(text, FILE);
  } catch (err) {
    if (err instanceof KataError) return err;
    throw err;
  }
  throw new Error("expected a configuration error");
}

describe("configuration", () => {
  it("a missing file at the default path means the defaults; one the operator named is an error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cfg-"));
    try {
      expect(await loadConfig(join(dir, "absent.toml"))).toEqual({ config: DEFAULTS, defaults: true, notes: [] });
      await expect(loadConfig(join(dir, "absent.toml"), { required: true })).rejects.toMatchObject({
        code: "config-unreadable",
        message: `${join(dir, "absent.toml")}: does not exist`,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the shipped config/config.toml is exactly the defaults", async () => {
    expect(await loadConfig(join(import.meta.dirname, "../../../config/config.toml"))).toEqual({
      config: DEFAULTS,
      defaults: false,
      notes: [],
    });
  });

  it("reads the keys docs/interface.md lists", () => {
    const config = parseConfig(
      `[source]\nurl = "http://127.0.0.1:9/x/"\nname = "kata-containers"\nverify = "signature"\nkeyring = "/etc/k.asc"\n` +
        `[policy]\nversions = ">=3.30.0 <4"\nconstraints = [{ kata = ">=4.0.0", flatcar = ">=4459.0.0", reason = "cgroup fix" }]\n` +
        `[api]\nlisten = "127.0.0.1:9999"\n`,
      FILE,
    );
    expect(config.source).toMatchObject({ url: "http://127.0.0.1:9/x/", verify: "signature", keyring: "/etc/k.asc" });
    expect(config.policy.versions).toBe(">=3.30.0 <4");
    expect(config.policy.constraints).toEqual([{ kata: ">=4.0.0", flatcar: ">=4459.0.0", reason: "cgroup fix" }]);
    expect(config.api.listen).toBe("127.0.0.1:9999");
    expect(config.policy.keep).toBe(DEFAULTS.policy.keep);
  });

  it.each([
    ["", true],
    ["[containerd]\nenabled = false\n", false],
    ["[containerd]\nenabled = false\n[health]\ncanary = true\n", true],
    ["[health]\ncanary = false\n", false],
  ])("the canary in %j is %s: on by default only with the containerd registration", (text, on) => {
    expect(parseConfig(text, FILE).health.canary).toBe(on);
  });

  it("reads the canary's and the cluster's keys", () => {
    const config = parseConfig(
      '[containerd]\naddress = "/tmp/c.sock"\n[health]\ncanary_timeout_seconds = 5\ncanary_runtime = "io.containerd.runc.v2"\n[cluster]\nnfd_features_file = ""\n',
      FILE,
    );
    expect(config.containerd.address).toBe("/tmp/c.sock");
    expect(config.health).toEqual({ canary: true, canaryTimeoutSeconds: 5, canaryRuntime: "io.containerd.runc.v2" });
    expect(config.cluster.nfdFeaturesFile).toBe("");
  });

  it.each([
    ['[source]\nurl = "https://x/"\nnmae = "k"\n', 'file.toml:3: unknown key "source.nmae"', "source.nmae"],
    ['[policy]\nversions = "latest"\n', ':2: key "policy.versions" must be a semver range', '"latest"'],
    ['[source]\nverify = "gpg"\n', 'key "source.verify" must be "checksum" or "signature"', '"gpg"'],
    ['[api]\nlisten = "0.0.0.0:8720"\n', 'key "api.listen" must be a loopback address', "0.0.0.0"],
    ['[source]\nurl = "ftp://x/"\n', 'key "source.url" must be an http(s) URL ending in /', "ftp"],
    ['[source]\nurl = "https://u:pw@x/"\n', ':2: key "source.url" must be an http(s) URL', '"https://***@x/"'],
    [
      '[[companion]]\nname = "ch"\nversions = ">=1"\nurl = "https://token@x/"\n',
      'key "companion[0].url"',
      "user or password",
    ],
    ['[source]\nurl = "https://x/?token=t/"\n', ':2: key "source.url" must be an http(s) URL', "it has a query"],
    ['[source]\nurl = "https://x/#top/"\n', ':2: key "source.url" must be an http(s) URL', "it has a fragment"],
    ["[constructor]\n", ':1: unknown section "constructor"; expected one of source, policy', "companion"],
    ["# c\n[source.valueOf]\n", ':2: unknown key "source.valueOf"; expected one of url', "sysupdate"],
    ['[ source . "toString" ]\nx = 1\n', ':1: unknown key "source.toString"', "url, name"],
    ['\n["__proto__"]\n', ':2: unknown section "__proto__"; expected one of source', "companion"],
    ["source.constructor = 1\n", ':1: unknown key "source.constructor"', "url, name"],
    ['[api]\nenabled = true\n\n[policy]\n"keep" = 0\n', ':5: key "policy.keep" must be an integer', "0"],
    ["[policy]\nrequires = [{ __proto__ = 1 }]\n", 'unknown key "policy.requires[0].__proto__"', "kata, companion"],
    ["[fetch]\nmanifest_max_bytes = 100\n", 'key "fetch.manifest_max_bytes" must be an integer from 4096', "100"],
    ["[daemon]\ninterval_seconds = 5\n", 'key "daemon.interval_seconds" must be an integer from 60', "5"],
    ["[daemon]\ninterval_seconds = inf\n", 'key "daemon.interval_seconds" must be an integer from 60', "got inf"],
    ["[fetch]\nretries = nan\n", ':2: key "fetch.retries" must be an integer from 0 to 20', "got nan"],
    ["[sources]\nurl = 1\n", 'unknown section "sources"', "source, policy"],
    ['[policy]\nconstraints = [{ kata = ">=4" }]\n', 'policy.constraints[0] is missing "flatcar"', "semver"],
    ["source = 3\n", '"source" must be a table', "[source]"],
    ["[source\nurl=", "not valid TOML", FILE],
    ['[source]\narch = "x86_64"\n', ':2: key "source.arch" must be a systemd architecture name', 'calls it "x86-64"'],
    ['[source]\narch = "../x"\n', ':2: key "source.arch" must be a systemd architecture name', '"../x"'],
    ['[source]\nname = "a..b"\n', ':2: key "source.name" must be an extension name', 'contains ".."'],
    ['[source]\nname = "kata.raw"\n', ':2: key "source.name" must be an extension name', 'not end in ".raw"'],
    [`[source]\nname = "${"a".repeat(300)}"\n`, ':2: key "source.name" must be an extension', "longer than 255"],
    ["[policy]\nmax_wait_seconds = -1\n", ':2: key "policy.max_wait_seconds" must be an integer from 0', "-1"],
    [
      '[cluster]\nreboot_sentinel = "run/reboot-required"\n',
      ':2: key "cluster.reboot_sentinel" must be an absolute',
      '""',
    ],
    [
      '[cluster]\nreboot_sentinel = "/run/"\n',
      'key "cluster.reboot_sentinel" must be an absolute file path',
      '"/run/"',
    ],
    ['[[companion]]\nname = "ch..x"\nversions = ">=1"\n', 'key "companion[0].name" must be an extension name', ".."],
    ["[health]\ncanary_timeout_seconds = 0\n", 'key "health.canary_timeout_seconds" must be an integer from 1', "0"],
    ['[health]\ncanary_runtime = "kata"\n', 'key "health.canary_runtime" must be a containerd runtime type', '"kata"'],
    [
      '[cluster]\nnfd_features_file = "features.d/x"\n',
      'key "cluster.nfd_features_file" must be an absolute',
      "features.d",
    ],
    ['[containerd]\naddress = "run/c.sock"\n', 'key "containerd.address" must be an absolute path', "run/c.sock"],
    [
      '[policy]\nrequires = [{ kata = "3.x", companion = "-ch", versions = ">=1", reason = "r" }]\n',
      ':2: key "policy.requires[0].companion" must be the name of a [[companion]]',
      'starts with "-"',
    ],
  ])("rejects %j naming file, key and expectation", (text, message, detail) => {
    const err = errorOf(text);
    expect(err.code).toBe("config-invalid");
    expect(err.message.replace(FILE, "file.toml")).toContain(message.replace(FILE, "file.toml"));
    expect(err.message).toContain(detail);
    expect(err.message.startsWith(FILE)).toBe(true);
  });

  it("an unreadable file is an error, not the defaults", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cfg-"));
    try {
      writeFileSync(join(dir, "c.toml"), "");
      await expect(loadConfig(dir)).rejects.toMatchObject({ code: "config-unreadable" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
