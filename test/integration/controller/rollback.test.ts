// Rollback on request: it undoes the last switch, only that, and what it holds afterwards. Real squashfs images
// from a release server on 127.0.0.1 and a sandbox root; systemd-sysext cannot merge a symlinked image under
// --root (ENVIRONMENT.md), so the merge is reported as unobservable here, as the daemon itself does there.
import { mkdtempSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger, type Logger } from "../../../src/log/logger.ts";
import { hostPaths } from "../../../src/paths.ts";
import { buildImage, cloudHypervisorImage } from "../../helpers/images.ts";
import { reconcilerOn, unobservedSysext } from "../../helpers/reconciler.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import { makeSandboxRoot, writeConfig } from "../../helpers/sandbox.ts";

const CH = "cloud-hypervisor";
const K32 = "kata-containers-3.32.0-x86-64.raw";
const K33 = "kata-containers-3.33.0-x86-64.raw";
const C51 = "cloud-hypervisor-v51.0-x86-64.raw";
const C52 = "cloud-hypervisor-v52.0-x86-64.raw";
let kataServer: ReleaseServer;
let chServer: ReleaseServer;

beforeAll(async () => {
  const kataDir = mkdtempSync(join(tmpdir(), "kata-pub-rollback-"));
  const chDir = mkdtempSync(join(tmpdir(), "kata-pub-rollback-ch-"));
  const kata = (version: string) => ({
    version,
    content: buildImage({ version }, join(kataDir, "build", `${version}.raw`)),
  });
  const ch = (version: string) => ({
    version,
    content: cloudHypervisorImage(version, join(chDir, "build", `${version}.raw`)),
  });
  await publishRelease(kataDir, { images: [kata("3.32.0"), kata("3.33.0")] });
  await publishRelease(chDir, { name: CH, images: [ch("v51.0"), ch("v52.0")] });
  kataServer = await startReleaseServer(kataDir);
  chServer = await startReleaseServer(chDir);
});
afterAll(async () => {
  await kataServer?.close();
  await chServer?.close();
});

/** A sandbox host whose passes run with the configuration given last to `configure`. */
function host(withCompanion: boolean) {
  const root = makeSandboxRoot();
  const paths = hostPaths(root);
  const sysext = unobservedSysext();
  const configure = async (kata: string, companion = ">=51.0", extra = "", log?: Logger) => {
    const ch = withCompanion
      ? `[[companion]]\nname = "${CH}"\nurl = "${chServer.url}"\nversions = "${companion}"\n`
      : "";
    writeConfig(
      root,
      // activation = "force": Kata shims other tests run on this machine must not defer these passes.
      `[source]\nurl = "${kataServer.url}"\n[policy]\nversions = "${kata}"\nactivation = "force"\n${ch}[containerd]\nenabled = false\n${extra}`,
    );
    return reconcilerOn(root, { sysext, preflight: null, ...(log === undefined ? {} : { log }) });
  };
  const active = (name = "kata-containers") =>
    readlinkSync(join(root, `etc/extensions/${name}.raw`))
      .split("/")
      .pop();
  const held = () => JSON.parse(readFileSync(paths.stateFile, "utf8")).held;
  return { configure, active, held, linkPath: join(root, "etc/extensions/kata-containers.raw") };
}

describe("rollback on request", () => {
  it("a rollback of a rollback returns, and leaves only the image it left held", async () => {
    const h = host(false);
    expect((await (await h.configure("<3.33")).run({ kind: "reconcile" })).result).toBe("ok");
    const logged: string[] = [];
    const r = await h.configure(
      ">=3.30",
      undefined,
      "",
      createLogger((level, message) => logged.push(`${level}: ${message}`)),
    );
    expect((await r.run({ kind: "reconcile" })).result).toBe("ok");
    expect(h.active()).toBe(K33);

    expect((await r.run({ kind: "rollback" })).result).toBe("ok");
    expect(h.active()).toBe(K32);
    expect(h.held()).toEqual({ "kata-containers": [K33] });
    expect(logged.filter((l) => l.includes("held by an earlier rollback"))).toEqual([]);

    expect((await r.run({ kind: "rollback" })).result).toBe("ok");
    expect(h.active()).toBe(K33);
    // Said, so nobody trying to go back two versions takes this for it.
    expect(logged).toContain(
      `warning: ${K33} had been held by an earlier rollback, which this one undid; its hold is lifted (to go further back, pin [policy] versions)`,
    );
    // The operator went back to 3.33.0 on purpose: it is no longer held; 3.32.0, rolled back from, is.
    expect(h.held()).toEqual({ "kata-containers": [K32] });
    const pass = await r.run({ kind: "reconcile" });
    expect(pass.result, pass.error?.message).toBe("ok");
    expect(h.active()).toBe(K33);
  });

  it("moves back only the members the last switch moved", async () => {
    const h = host(true);
    expect((await (await h.configure("<3.33", "<52")).run({ kind: "reconcile" })).result).toBe("ok");
    expect([h.active(), h.active(CH)]).toEqual([K32, C51]);
    expect((await (await h.configure(">=3.30", "<52")).run({ kind: "reconcile" })).result).toBe("ok");
    expect([h.active(), h.active(CH)]).toEqual([K33, C51]);
    // Only the companion moves in this switch.
    const r = await h.configure(">=3.30", ">=51.0");
    expect((await r.run({ kind: "reconcile" })).result).toBe("ok");
    expect([h.active(), h.active(CH)]).toEqual([K33, C52]);

    expect((await r.run({ kind: "rollback" })).result).toBe("ok");
    expect([h.active(), h.active(CH)]).toEqual([K33, C51]);
    expect(h.held()).toEqual({ [CH]: [C52] });
  });

  it("keeps its holds while the configuration stays, and any pass under another one lifts them", async () => {
    const h = host(false);
    expect((await (await h.configure("<3.33")).run({ kind: "reconcile" })).result).toBe("ok");
    const r = await h.configure(">=3.30");
    expect((await r.run({ kind: "reconcile" })).result).toBe("ok");
    expect((await r.run({ kind: "rollback" })).result).toBe("ok");
    expect((await r.run({ kind: "reconcile" })).result).toBe("ok");
    expect([h.active(), h.held()]).toEqual([K32, { "kata-containers": [K33] }]);
    // The boot step, choosing among stored images without the network, skips the held one too.
    rmSync(h.linkPath);
    expect((await r.run({ kind: "offline" })).result).toBe("ok");
    expect(h.active()).toBe(K32);
    // An edit that decides nothing about versions (the log level) leaves the holds alone.
    const louder = await h.configure(">=3.30", undefined, '[daemon]\nlog_level = "debug"\n');
    expect((await louder.run({ kind: "reconcile" })).result).toBe("ok");
    expect([h.active(), h.held()]).toEqual([K32, { "kata-containers": [K33] }]);
    // Edited while no daemon ran (or on a host that only runs --once): the next pass sees another configuration.
    const edited = await h.configure(">=3.31");
    expect((await edited.run({ kind: "reconcile" })).result).toBe("ok");
    expect([h.active(), h.held()]).toEqual([K33, {}]);
  });

  it("refuses when the last switch had nothing before it, and changes nothing", async () => {
    const h = host(false);
    const logged: [string, string, Record<string, unknown>][] = [];
    const r = await h.configure(
      ">=3.30",
      undefined,
      "",
      createLogger((level, message, fields) => {
        logged.push([level, message, fields]);
      }),
    );
    expect((await r.run({ kind: "reconcile" })).result).toBe("ok");
    logged.length = 0;
    const refused = await r.run({ kind: "rollback" });
    expect(refused.result).toBe("failed");
    expect(refused.error?.message).toBe("no previous image to roll back to");
    // An answer to the operator, not a failed activation: a notice with its own code.
    expect(refused.error?.code).toBe("rollback-refused");
    expect(logged.filter(([, , f]) => f.ERROR_CODE !== undefined)).toEqual([
      [
        "notice",
        "rollback refused: no previous image to roll back to",
        expect.objectContaining({ ERROR_CODE: "rollback-refused" }),
      ],
    ]);
    expect(h.active()).toBe(K33);
    expect(h.held()).toEqual({});
  });
});
