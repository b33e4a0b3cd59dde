// The operator's /etc/kata-containers/configuration.toml across real passes (release server, squashfs images, the
// store, the containerd files under a sandbox root): the default "kata" handler runs with it while it exists, and
// the preflight judges the file the handler runs with.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../../src/log/logger.ts";
import { hostPaths } from "../../../src/paths.ts";
import { runPreflight } from "../../../src/preflight/run.ts";
import { handlerCapableHost } from "../../fixtures/preflight/hosts.ts";
import { scratch } from "../../fixtures/preflight/toolchain.ts";
import { registeredConfigPaths } from "../../helpers/containerd.ts";
import { buildImage } from "../../helpers/images.ts";
import { reconcilerOn, unobservedSysext } from "../../helpers/reconciler.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import { makeSandboxRoot, writeConfig } from "../../helpers/sandbox.ts";

const D = "/opt/kata/share/defaults/kata-containers";
const ETC = "etc/kata-containers/configuration.toml";
let server: ReleaseServer;

beforeAll(async () => {
  const pub = mkdtempSync(join(tmpdir(), "kata-pub-etc-config-"));
  const qemu = { [`${D.slice(1)}/configuration-qemu.toml`]: "[hypervisor.qemu]\n" };
  await publishRelease(pub, {
    images: [{ version: "3.32.0", content: buildImage({ version: "3.32.0", files: qemu }, join(pub, "b", "a.raw")) }],
  });
  server = await startReleaseServer(pub);
});
afterAll(async () => {
  await server?.close();
  rmSync(scratch(), { recursive: true, force: true });
});

/** A sandbox host with Flatcar's containerd configuration, and a pass that logs into `logs`. */
function host() {
  const root = handlerCapableHost(makeSandboxRoot());
  // The operator's own Cloud Hypervisor, which their /etc file names: a runnable one.
  mkdirSync(join(root, "usr/local/bin"), { recursive: true });
  copyFileSync(join(root, "opt/kata/bin/cloud-hypervisor"), join(root, "usr/local/bin/cloud-hypervisor"));
  mkdirSync(join(root, "usr/share/containerd"), { recursive: true });
  writeFileSync(join(root, "usr/share/containerd/config.toml"), "version = 2\n");
  writeConfig(root, `[source]\nurl = "${server.url}"\n`);
  const logs: string[] = [];
  const log = createLogger((_level, message) => logs.push(message));
  const pass = async () => {
    const outcome = await (await reconcilerOn(root, { sysext: unobservedSysext(), preflight: null, log })).run({
      kind: "reconcile",
    });
    expect(outcome.result, outcome.error?.message).toBe("ok");
  };
  return { root, logs, pass };
}

describe("the kata handler and /etc/kata-containers/configuration.toml", () => {
  it("runs with the /etc file from the pass that finds it, and with the shipped one again once it is gone", async () => {
    const { root, logs, pass } = host();
    mkdirSync(join(root, "etc/kata-containers"), { recursive: true });
    writeFileSync(join(root, ETC), '[hypervisor.clh]\npath = "/usr/local/bin/cloud-hypervisor"\n');
    const shipped = {
      kata: `${D}/configuration-clh.toml`,
      "kata-clh": `${D}/configuration-clh.toml`,
      "kata-qemu": `${D}/configuration-qemu.toml`,
    };

    await pass();
    expect(registeredConfigPaths(root)).toEqual({ ...shipped, kata: "/etc/kata-containers/configuration.toml" });

    rmSync(join(root, ETC));
    logs.length = 0;
    await pass();
    expect(registeredConfigPaths(root)).toEqual(shipped);
    expect(logs).toContain(
      "containerd's Kata runtime registration did not match kata-containers-3.32.0-x86-64.raw, the base configuration or the presence of /etc/kata-containers/configuration.toml; rewrote it",
    );
    // Level-triggered: nothing changed, nothing is rewritten.
    logs.length = 0;
    await pass();
    expect(logs.filter((m) => m.includes("registration did not match"))).toEqual([]);
  });

  it("the preflight judges the file the registration gives the kata handler, with and without /etc", async () => {
    const { root, pass } = host();
    await pass();
    // What systemd-sysext would merge: the active image's own files (under --root nothing is merged).
    const payloadRoot = join(mkdtempSync(join(tmpdir(), "kata-payload-")), "tree");
    const image = join(root, "var/lib/kata-sysextd/images/kata-containers-3.32.0-x86-64.raw");
    execFileSync("unsquashfs", ["-q", "-n", "-no-xattrs", "-d", payloadRoot, image]);
    /** The file the registration gives "kata", and what the preflight says it judged. */
    const both = async () => {
      const report = await runPreflight({ paths: hostPaths(root), payloadRoot });
      const detail = (id: string, hypervisor?: string) =>
        report.checks.find((c) => c.id === id && (c.hypervisor ?? undefined) === hypervisor)?.detail ?? "";
      return {
        registered: registeredConfigPaths(root).kata,
        config: detail("kata-config"),
        clhBinary: detail("hypervisor-binary", "clh"),
      };
    };

    const shipped = await both();
    expect(shipped.registered).toBe(`${D}/configuration-clh.toml`);
    expect(shipped.config).toContain(`handler kata runs with ${shipped.registered}`);
    expect(shipped.clhBinary).toContain("/opt/kata/bin/cloud-hypervisor");

    mkdirSync(join(root, "etc/kata-containers"), { recursive: true });
    writeFileSync(join(root, ETC), '[hypervisor.clh]\npath = "/usr/local/bin/cloud-hypervisor"\n');
    await pass();
    const etc = await both();
    expect(etc.registered).toBe("/etc/kata-containers/configuration.toml");
    expect(etc.config).toContain(`handler kata runs with ${etc.registered}`);
    // The hypervisor is judged from that file: its path, not the shipped one.
    expect(etc.config).toContain(`clh (${etc.registered})`);
    expect(etc.clhBinary).toContain("/usr/local/bin/cloud-hypervisor");
  });
});
