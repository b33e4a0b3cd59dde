// The running daemon refuses, on a reload, what it would refuse at start: a configuration of prototype names
// (which once ran a pass on the defaults), and the removal of the file it started with. It keeps the old one.
import { rmSync, unlinkSync } from "node:fs";
import { expect, it } from "vitest";
import { freePort } from "../../helpers/net.ts";
import { makeSandboxRoot, startDaemon, until, writeConfig } from "../../helpers/sandbox.ts";

it("a reload to [constructor] or to no file at all is rejected and the old configuration kept", async () => {
  const root = makeSandboxRoot();
  const port = await freePort();
  // A source that refuses at once: passes end quickly and never reach the default source.
  const config = writeConfig(
    root,
    `[source]\nurl = "http://127.0.0.1:9/"\n[fetch]\nretries = 0\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`,
  );
  const daemon = startDaemon(root);
  try {
    const lastReconcile = async () =>
      ((await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as { lastReconcile: unknown }).lastReconcile;
    await until("the first pass", async () => (await lastReconcile().catch(() => null)) !== null, daemon.stderr);

    writeConfig(root, "[constructor]\n");
    daemon.signal("SIGHUP");
    await until("the rejection", () => daemon.stderr().includes('unknown section "constructor"'), daemon.stderr);
    expect(daemon.stderr()).toMatch(/rejected the new configuration, keeping the old one: .*config\.toml:1: unknown/);

    unlinkSync(config);
    daemon.signal("SIGHUP");
    await until("the second rejection", () => daemon.stderr().includes(`${config}: does not exist`), daemon.stderr);
    expect(daemon.stderr()).not.toContain("extensions.flatcar.org");
    expect(daemon.stderr()).not.toContain("configuration reloaded");
    expect(await daemon.stop()).toBe(0);
  } finally {
    daemon.child.kill("SIGKILL");
    rmSync(root, { recursive: true, force: true });
  }
}, 60_000);
