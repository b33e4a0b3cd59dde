// The running daemon watches its configuration (chokidar): a bad new file is rejected and the old one kept, a
// good one is taken without a restart; a link changed behind its back is noticed and reconciled.
import { mkdirSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StatusDocument } from "../../../src/status.ts";
import { buildImage } from "../../helpers/images.ts";
import { freePort } from "../../helpers/net.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import {
  CTL,
  makeSandboxRoot,
  NODE,
  type RunningDaemon,
  runArgv,
  startDaemon,
  until,
  writeConfig,
} from "../../helpers/sandbox.ts";

let server: ReleaseServer;
let daemon: RunningDaemon;
let root: string;
let base: string;
let config: string;

const waitFor = (what: string, check: () => boolean | Promise<boolean>) =>
  until(what, check, () => `daemon stderr:\n${daemon.stderr()}`);

beforeAll(async () => {
  const pub = mkdtempSync(join(tmpdir(), "kata-pub-watch-"));
  const images = ["3.30.0", "3.32.0"].map((version) => ({
    version,
    content: buildImage({ version }, join(pub, `${version}.raw`)),
  }));
  await publishRelease(pub, { images });
  server = await startReleaseServer(pub);
  root = makeSandboxRoot();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  config = `[source]\nurl = "${server.url}"\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`;
  writeConfig(root, config);
  daemon = startDaemon(root);
  await waitFor("3.32.0 active", () => daemon.stderr().includes("activated kata-containers-3.32.0-x86-64.raw"));
}, 60_000);

afterAll(async () => {
  await daemon?.stop();
  await server?.close();
});

describe("the daemon's file watches", () => {
  it("rejects a broken configuration and keeps serving with the old one", async () => {
    writeConfig(root, `${config}[policy]\nversions = "latest"\n`);
    await waitFor("the rejection", () =>
      daemon.stderr().includes("rejected the new configuration, keeping the old one"),
    );
    expect(daemon.stderr()).toContain('key "policy.versions" must be a semver range');
    // Not only in the journal: a restart would exit 2 on this file, so /status, /healthz and /metrics say so.
    const status = (await (await fetch(`${base}/status`)).json()) as StatusDocument;
    expect(status.configRejected).toMatchObject({ code: "config-invalid" });
    expect(status.configRejected?.message).toMatch(/config\.toml:\d+: key "policy\.versions" must be a semver range/);
    expect(status.configRejected?.remedy).toContain("a restart or reboot reads the file as it is now");
    expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/^kata_sysextd_config_rejected 1$/m);
    const ctl = await runArgv([NODE, CTL, "status", "--root", root]);
    expect(ctl.stdout).toContain("  config     REJECTED at ");
    expect(ctl.stdout).toMatch(
      /must be a semver range like ">=3\.21\.0", got "latest" \(config-invalid\)\n {2}remedy {5}/,
    );
  });

  it("takes a good configuration without a restart and acts on it", async () => {
    writeConfig(root, `${config}[policy]\nversions = "<3.31"\n`);
    await waitFor("the reload", () => daemon.stderr().includes("configuration reloaded"));
    const status = (await (await fetch(`${base}/status`)).json()) as StatusDocument;
    expect(status.configRejected).toBeNull();
    expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/^kata_sysextd_config_rejected 0$/m);
    await waitFor("3.30.0 active", () =>
      readlinkSync(join(root, "etc/extensions/kata-containers.raw")).includes("3.30.0"),
    );
    expect(daemon.child.exitCode).toBeNull();
    // The pass that switched has ended: its end must not pass for the next test's reload's.
    await waitFor("the switching pass's end", async () => {
      const { state } = (await (await fetch(`${base}/status`)).json()) as StatusDocument;
      return state === "idle" || state === "degraded" || state === "error";
    });
  });

  it("says which changed keys need a restart instead of keeping them silently", async () => {
    const changed = new Date().toISOString();
    writeConfig(root, `${config}[policy]\nversions = "<3.31"\n[daemon]\nlog_level = "debug"\ninterval_seconds = 600\n`);
    await waitFor("the warning", () => daemon.stderr().includes("daemon.log_level changed; restart kata-sysextd"));
    expect(daemon.child.exitCode).toBeNull();
    // The pass the reload starts has ended: the next test's link removal must not race it.
    await waitFor("the reload's pass", async () => {
      const status = (await (await fetch(`${base}/status`)).json()) as { lastReconcile: { at: string } | null };
      return (status.lastReconcile?.at ?? "") >= changed;
    });
  });

  it("notices a link removed behind its back and puts the right one back", async () => {
    const link = join(root, "etc/extensions/kata-containers.raw");
    rmSync(link);
    await waitFor("the notice", () => daemon.stderr().includes("changed outside kata-sysextd; reconciling"));
    await waitFor("the link back", () => {
      try {
        return readlinkSync(link).includes("3.30.0");
      } catch {
        return false;
      }
    });
    writeFileSync(join(root, "run/reboot-required"), "");
    await waitFor("reboot-required", () => daemon.stderr().includes("/run/reboot-required appeared"));
  });
});

describe("with [source] sysupdate", () => {
  const TRANSFER = "/etc/sysupdate.kata-containers.d/kata-containers.conf";
  let bakery: RunningDaemon;
  let host: string;
  const transfer = (extra = "") =>
    `[Transfer]\nVerify=false\n\n[Source]\nType=url-file\nPath=${server.url}kata-containers/\nMatchPattern=kata-containers-@v-%a.raw\n${extra}`;

  beforeAll(async () => {
    host = makeSandboxRoot();
    mkdirSync(join(host, "etc/sysupdate.kata-containers.d"));
    writeFileSync(join(host, TRANSFER), transfer());
    const port = await freePort();
    writeConfig(
      host,
      `[source]\nsysupdate = "${TRANSFER}"\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`,
    );
    bakery = startDaemon(host);
    await until("3.32.0 active", () => bakery.stderr().includes("activated kata-containers-3.32.0-x86-64.raw"));
  }, 60_000);

  afterAll(async () => {
    await bakery?.stop();
    rmSync(host, { recursive: true, force: true });
  });

  it("takes an edit of the transfer file as one of the configuration, without a signal", async () => {
    writeFileSync(join(host, TRANSFER), transfer("MinVersion=3.30\n"));
    await until(
      "the rejection",
      () => bakery.stderr().includes("rejected the new configuration, keeping the old one"),
      () => `daemon stderr:\n${bakery.stderr()}`,
    );
    expect(bakery.stderr()).toContain("[Source] MinVersion=: kata-sysextd cannot honour this");
  });
});
