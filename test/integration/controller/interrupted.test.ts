// A switch the daemon died inside, found by the next pass, with a model of systemd-sysext whose refresh merges
// whatever the link names at that moment (under --root the real one cannot follow the symlink, ENVIRONMENT.md).
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { statusAfterPass } from "../../../src/controller/snapshot.ts";
import { createLogger, type Fields, MessageId } from "../../../src/log/logger.ts";
import { hostPaths } from "../../../src/paths.ts";
import { ActiveLink } from "../../../src/store/link.ts";
import type { Sysext } from "../../../src/sysext/sysext.ts";
import { handlerCapableHost } from "../../fixtures/preflight/hosts.ts";
import { scratch } from "../../fixtures/preflight/toolchain.ts";
import { buildImage, writeOsRelease } from "../../helpers/images.ts";
import { reconcilerOn } from "../../helpers/reconciler.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import { makeSandboxRoot, recordInterruptedSwitch, writeConfig } from "../../helpers/sandbox.ts";
import { statusSnapshot } from "../api/documents.ts";

const A = "kata-containers-3.32.0-x86-64.raw";
const B = "kata-containers-3.33.0-x86-64.raw";
let server: ReleaseServer;

beforeAll(async () => {
  const pub = mkdtempSync(join(tmpdir(), "kata-pub-interrupted-"));
  const qemu = { "opt/kata/share/defaults/kata-containers/configuration-qemu.toml": "[hypervisor.qemu]\n" };
  await publishRelease(pub, {
    images: [
      { version: "3.32.0", content: buildImage({ version: "3.32.0" }, join(pub, "b", "a.raw")) },
      { version: "3.33.0", content: buildImage({ version: "3.33.0", files: qemu }, join(pub, "b", "b.raw")) },
    ],
  });
  server = await startReleaseServer(pub);
});
afterAll(async () => {
  await server?.close();
  rmSync(scratch(), { recursive: true, force: true });
});

/** A host on A and B as the last pass left it, with the switch from A to B recorded as under way. */
async function hostInsideSwitch() {
  const root = makeSandboxRoot();
  // A host that can run the handlers (KVM, vhost-vsock, a loader and libc) with the Kata files where a merge puts
  // them (under --root nothing merges): which handlers are registered then follows the linked image alone.
  handlerCapableHost(root);
  writeOsRelease(root);
  const paths = hostPaths(root);
  const link = new ActiveLink(join(root, "etc/extensions/kata-containers.raw"), paths.storeDir);
  const linked = () => readlinkSync(link.path).split("/").pop();
  const merge = { image: "", refreshes: 0 };
  const sysext: Sysext = {
    limitation: null,
    refresh: async () => {
      merge.refreshes += 1;
      merge.image = linked() ?? "";
    },
    merged: async () => (merge.image === "" ? [] : ["kata-containers"]),
  };
  // What confirming a merge reads under /usr once the image is merged.
  mkdirSync(join(root, "usr/lib/extension-release.d"), { recursive: true });
  writeFileSync(join(root, "usr/lib/extension-release.d/extension-release.kata-containers"), "ID=_any\n");
  mkdirSync(join(root, "usr/share/containerd"), { recursive: true });
  writeFileSync(join(root, "usr/share/containerd/config.toml"), "version = 2\n");
  const log = createLogger((level, message, fields) => journal.push({ level, message, fields }));
  const journal: { level: string; message: string; fields: Fields }[] = [];
  const reconciler = async (policy: string, url = server.url) => {
    writeConfig(root, `[source]\nurl = "${url}"\n${policy}`);
    return reconcilerOn(root, { sysext, preflight: null, log });
  };
  expect((await (await reconciler('[policy]\nversions = "<3.33"\n')).run({ kind: "reconcile" })).result).toBe("ok");
  expect((await (await reconciler("")).run({ kind: "reconcile" })).result).toBe("ok");
  expect(merge.image).toBe(B);
  recordInterruptedSwitch(root, A, B);
  const registered = () => readFileSync(join(root, "etc/kata-sysextd/containerd.toml"), "utf8");
  expect(registered()).toContain("kata-qemu");
  return { root, paths, link, linked, merge, reconciler, registered, journal };
}

describe("a switch the daemon died inside", () => {
  it("is merged again even when the dying process had put the link back already", async () => {
    const host = await hostInsideSwitch();
    // Killed inside its own undo: the link is back on A, its refresh never ran, so B is what is merged.
    await host.link.point(A);
    host.merge.refreshes = 0;
    const pass = await (await host.reconciler('[policy]\nversions = "<3.33"\n')).run({ kind: "reconcile" });
    expect(pass.result, pass.error?.message).toBe("ok");
    expect(host.linked()).toBe(A);
    expect(host.merge.image).toBe(A);
    expect(host.merge.refreshes).toBeGreaterThan(0);
    expect(JSON.parse(readFileSync(host.paths.stateFile, "utf8")).switching).toBeNull();
  });

  it("puts containerd's runtimes back with the link, even when the rest of the pass fails", async () => {
    const host = await hostInsideSwitch();
    // The pass finds the switch, undoes it, then fails: this source refuses connections.
    const pass = await (await host.reconciler("[fetch]\nretries = 0\n", "http://127.0.0.1:9/")).run({
      kind: "reconcile",
    });
    expect(pass.result).toBe("failed");
    expect(host.linked()).toBe(A);
    expect(host.registered()).not.toContain("kata-qemu");
    expect(host.registered()).toContain("kata-clh");
  });

  it("a switch record naming a file outside the store is refused: the link never leaves the store", async () => {
    const host = await hostInsideSwitch();
    recordInterruptedSwitch(host.root, "../../../../../tmp/elsewhere.raw", B);
    const seen: string[] = [];
    const watch = setInterval(() => seen.push(readlinkSync(host.link.path)), 1);
    try {
      const pass = await (await host.reconciler("")).run({ kind: "reconcile" });
      expect(pass.result, pass.error?.message).toBe("ok");
    } finally {
      clearInterval(watch);
    }
    expect(host.linked()).toBe(B);
    expect(seen.every((target) => target.startsWith("../../var/lib/kata-sysextd/images/"))).toBe(true);
    const restored = host.journal.filter((r) => r.fields.MESSAGE_ID === MessageId.stateRestored);
    expect(restored).toHaveLength(1);
    expect(restored[0]?.message).toContain(
      'switching[0].from must be a store file name (this one contains a path separator), got "../../../../../tmp/elsewhere.raw"',
    );
  });

  it("with state.json and its backup unusable, the pass starts empty and /status says degraded until the moved file is gone", async () => {
    const host = await hostInsideSwitch();
    writeFileSync(host.paths.stateFile, '{"schema":1,"switching":"yes"}');
    writeFileSync(`${host.paths.stateFile}.bak`, "");
    const pass = await (await host.reconciler("")).run({ kind: "reconcile" });
    expect(pass.result, pass.error?.message).toBe("ok");
    expect(host.linked()).toBe(B);
    expect(host.journal.filter((r) => r.fields.MESSAGE_ID === MessageId.stateLost)).toHaveLength(1);
    const status = statusAfterPass({
      base: statusSnapshot(),
      outcome: pass,
      at: "2026-12-02T08:00:00.000Z",
      preflight: null,
    });
    expect(status.state).toBe("degraded");
    expect(status.stateDamage?.movedTo).toMatch(/state\.json\.corrupt-/);
    rmSync(status.stateDamage?.movedTo ?? "");
    const after = await (await host.reconciler("")).run({ kind: "reconcile" });
    const healthy = statusAfterPass({ base: status, outcome: after, at: "2026-12-02T08:01:00.000Z", preflight: null });
    expect(healthy).toMatchObject({ state: "idle", stateDamage: null });
    expect(host.journal.filter((r) => r.fields.MESSAGE_ID === MessageId.stateLost)).toHaveLength(1);
  });
});
