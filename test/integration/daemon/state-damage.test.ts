// The real daemon with state.json and its backup both unusable: both are moved aside, /status says so with a
// remedy naming both files, and once the operator has removed them /status says so at once, not at the next pass
// (hours away at the default interval) or refresh.
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import type { StatusDocument } from "../../../src/status.ts";
import { freePort } from "../../helpers/net.ts";
import { makeSandboxRoot, startDaemon, until, writeConfig } from "../../helpers/sandbox.ts";

it("stateDamage names both moved-aside files and clears as soon as the operator removed them", async () => {
  const root = makeSandboxRoot();
  const port = await freePort();
  // A source that refuses at once: passes end quickly, and none comes by itself for hours.
  writeConfig(
    root,
    `[source]\nurl = "http://127.0.0.1:9/"\n[fetch]\nretries = 0\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`,
  );
  const stateFile = join(root, "var/lib/kata-sysextd/state.json");
  mkdirSync(join(root, "var/lib/kata-sysextd"), { recursive: true });
  writeFileSync(stateFile, '{"schema":2,"previous":"not a record"}');
  writeFileSync(`${stateFile}.bak`, "{");
  const daemon = startDaemon(root);
  const status = async () => (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as StatusDocument;
  try {
    await until("the first pass", async () => (await status().catch(() => null))?.lastReconcile != null, daemon.stderr);
    const { stateDamage } = await status();
    const movedTo = stateDamage?.movedTo ?? "";
    expect(movedTo).toMatch(/state\.json\.corrupt-\d{4}-\d\d-\d\dT\d{9}Z$/);
    expect(existsSync(`${movedTo}.bak`)).toBe(true);
    expect(stateDamage?.remedy).toContain(`look at ${movedTo} and its backup ${movedTo}.bak`);
    expect(stateDamage?.remedy).toContain("then remove both");

    rmSync(movedTo);
    rmSync(`${movedTo}.bak`);
    await until("/status without stateDamage", async () => (await status()).stateDamage === null, daemon.stderr);
    expect(daemon.stderr()).toContain(`${movedTo} was removed: the state file damage is dealt with`);
    expect(await daemon.stop()).toBe(0);
  } finally {
    daemon.child.kill("SIGKILL");
    await daemon.exited;
    rmSync(root, { recursive: true, force: true });
  }
}, 60_000);
