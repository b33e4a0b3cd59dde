// The running daemon refuses, on a reload, what it would refuse at start: a configuration of prototype names
// (which once ran a pass on the defaults), and the removal of the file it started with. It keeps the old one, and
// /status says so until the file is back to what runs.
import { rmSync, unlinkSync } from "node:fs";
import { expect, it } from "vitest";
import type { StatusDocument } from "../../../src/status.ts";
import { freePort } from "../../helpers/net.ts";
import { makeSandboxRoot, startDaemon, until, writeConfig } from "../../helpers/sandbox.ts";

it("a reload to [constructor] or to no file at all is rejected and the old configuration kept", async () => {
  const root = makeSandboxRoot();
  const port = await freePort();
  // A source that refuses at once: passes end quickly and never reach the default source.
  const original = `[source]\nurl = "http://127.0.0.1:9/"\n[fetch]\nretries = 0\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`;
  const config = writeConfig(root, original);
  const daemon = startDaemon(root);
  try {
    const status = async () => (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as StatusDocument;
    const lastReconcile = async () => (await status()).lastReconcile;
    await until("the first pass", async () => (await lastReconcile().catch(() => null)) !== null, daemon.stderr);

    writeConfig(root, "[constructor]\n");
    daemon.signal("SIGHUP");
    await until("the rejection", () => daemon.stderr().includes('unknown section "constructor"'), daemon.stderr);
    expect(daemon.stderr()).toMatch(/rejected the new configuration, keeping the old one: .*config\.toml:1: unknown/);
    expect((await status()).configRejected?.message).toMatch(/config\.toml:1: unknown section "constructor"/);

    unlinkSync(config);
    daemon.signal("SIGHUP");
    await until("the second rejection", () => daemon.stderr().includes(`${config}: does not exist`), daemon.stderr);
    expect(daemon.stderr()).not.toContain("extensions.flatcar.org");
    expect(daemon.stderr()).not.toContain("configuration reloaded");
    expect((await status()).configRejected).toMatchObject({
      code: "config-unreadable",
      message: `${config}: does not exist`,
    });

    // The file back as it runs: nothing to reload, and nothing rejected any more.
    writeConfig(root, original);
    daemon.signal("SIGHUP");
    await until("the reload", () => daemon.stderr().includes("configuration reloaded (unchanged)"), daemon.stderr);
    await until("the rejection cleared", async () => (await status()).configRejected === null, daemon.stderr);
    expect(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).toMatch(/^kata_sysextd_config_rejected 0$/m);
    expect(await daemon.stop()).toBe(0);
  } finally {
    daemon.child.kill("SIGKILL");
    rmSync(root, { recursive: true, force: true });
  }
}, 60_000);
