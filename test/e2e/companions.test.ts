import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MessageId } from "../../src/log/logger.ts";
import {
  CHECKOUT,
  CONTAINER_NODE,
  flatcarUsr,
  kataPayload,
  projectUnits,
  settled,
  statusIn,
  unmountUsr,
} from "../helpers/e2e-daemon.ts";
import { buildImage, cloudHypervisorImage } from "../helpers/images.ts";
import { skipWithout } from "../helpers/needs.ts";
import { freePort } from "../helpers/net.ts";
import { bootContainer, type Container, type EtcEntry, nspawnUnavailableReason } from "../helpers/nspawn.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../helpers/release-server.ts";

const skip = skipWithout(nspawnUnavailableReason(), "the e2e companions test");

const REPO = resolve(import.meta.dirname, "../..");
const NODE = CONTAINER_NODE;
const CTL = join(CHECKOUT, "bin/kata-sysextctl.js");
const STORE = "/var/lib/kata-sysextd/images";
const KATA = "kata-containers";
const CH = "cloud-hypervisor";
const stored = (name: string, version: string) => `${STORE}/${name}-${version}-x86-64.raw`;
const OS = "4593.2.5";
const DAEMON_UNIT = "kata-sysextd.service";
const BOOT_TIMEOUT_MS = 240_000;
const STEP_TIMEOUT_MS = 60_000;

describe.skipIf(skip)("Kata with a companion extension under real systemd (systemd-nspawn)", () => {
  const started = Date.now();
  const timings: Record<string, number> = {};
  let host = "";
  let usrMount = "";
  let server: ReleaseServer | undefined;
  let port = 0;
  let c: Container;

  const config = (versions: string) =>
    [
      "[source]",
      `url = "${server?.url}"`,
      "[policy]",
      `versions = "${versions}"`,
      "requires = [",
      `  { kata = "3.33.x", companion = "${CH}", versions = "<53", reason = "CH 53 untested with Kata 3.33" },`,
      "]",
      "[[companion]]",
      `name = "${CH}"`,
      `url = "${server?.url}"`,
      'versions = ">=51.0"',
      "[api]",
      `listen = "127.0.0.1:${port}"`,
      "[containerd]",
      "enabled = false",
      "",
    ].join("\n");

  const sh = (argv: string[]) => c.check(argv);
  const ctl = (...args: string[]) => c.exec([NODE, CTL, ...args]);
  const { statusUntil } = statusIn<StatusDoc>(
    () => c,
    () => port,
    DAEMON_UNIT,
    STEP_TIMEOUT_MS,
  );
  const activeOf = (doc: StatusDoc, name: string) => doc.members.find((m) => m.name === name)?.active;
  const activations = async () =>
    (await c.journal(DAEMON_UNIT))
      .filter((e) => e.MESSAGE_ID === MessageId.imageActivated)
      .map((e) => ({ name: e.KATA_SYSEXT_NAME, version: e.KATA_SYSEXT_VERSION, previous: e.KATA_SYSEXT_PREVIOUS }));
  /**
   * Every merge systemd-sysext.service ran: the extensions its "Using extensions 'a', 'b'." line names, and how
   * many start jobs systemd finished for the unit. Matched on what the writers say about themselves (the merging
   * child's SYSLOG_IDENTIFIER, PID 1's UNIT=), not on journald's after-the-fact lookup of a process that may have
   * exited already.
   */
  const merges = async () => {
    await sh(["journalctl", "--sync"]);
    const json = (out: string) =>
      out
        .split("\n")
        .filter((line) => line.trim() !== "")
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    const used = json(await sh(["journalctl", "-b", "-o", "json", "SYSLOG_IDENTIFIER=(sd-sysext)"]))
      .map((e) => String(e.MESSAGE))
      .filter((m) => m.startsWith("Using extensions "));
    const jobs = json(await sh(["journalctl", "-b", "-o", "json", "_PID=1", "UNIT=systemd-sysext.service"])).filter(
      (e) => e.JOB_TYPE === "start" && e.JOB_RESULT === "done" && String(e.MESSAGE).startsWith("Finished "),
    );
    return { used, jobs: jobs.length };
  };
  const BOTH = "Using extensions 'cloud-hypervisor', 'kata-containers'.";
  /** Exactly one merge since `before`, and it took both members. */
  const expectOneJointMerge = async (before: { used: string[]; jobs: number }): Promise<void> => {
    const now = await merges();
    expect(now.used.slice(before.used.length)).toEqual([BOTH]);
    expect(now.jobs).toBe(before.jobs + 1);
  };

  /** Both links point into the store at the given versions, the real overlay has both, both payloads show. */
  const expectMergedSet = async (kata: string, ch: string): Promise<void> => {
    expect(await sh(["readlink", "-f", `/etc/extensions/${KATA}.raw`])).toBe(`${stored(KATA, kata)}\n`);
    expect(await sh(["readlink", "-f", `/etc/extensions/${CH}.raw`])).toBe(`${stored(CH, ch)}\n`);
    const list = await sh(["systemd-sysext", "list"]);
    expect(list).toMatch(/kata-containers\s+raw\s+\/etc\/extensions\/kata-containers\.raw/);
    expect(list).toMatch(/cloud-hypervisor\s+raw\s+\/etc\/extensions\/cloud-hypervisor\.raw/);
    const merged = JSON.parse(await sh(["systemd-sysext", "status", "--json=short"])) as SysextStatus[];
    const usr = merged.find((h) => h.hierarchy === "/usr")?.extensions;
    expect(usr).toContain(KATA);
    expect(usr).toContain(CH);
    expect(await sh(["cat", "/usr/share/kata-containers/VERSION"])).toBe(`${kata}\n`);
    expect(await sh(["/usr/bin/cloud-hypervisor"])).toBe(`cloud-hypervisor ${ch}\n`);
    expect(await sh(["/opt/kata/bin/containerd-shim-kata-v2"])).toBe(`kata-shim ${kata}\n`);
    // The Flatcar identity is the overlay's lower layer, so it survives the merge.
    expect(await sh(["grep", "^ID=", "/usr/lib/os-release"])).toBe("ID=flatcar\n");
  };

  beforeAll(async () => {
    host = mkdtempSync(join(tmpdir(), "kata-e2e-companions-"));
    const release = join(host, "release");
    mkdirSync(release);
    await publishRelease(release, {
      images: ["3.32.0", "3.33.0"].map((version) => ({
        version,
        content: buildImage({ version, files: kataPayload(version) }, join(host, "build", `${KATA}-${version}.raw`)),
      })),
    });
    await publishRelease(release, {
      name: CH,
      images: ["v51.0", "v52.0", "v53.0"].map((version) => ({
        version,
        content: cloudHypervisorImage(version, join(host, "build", `${CH}-${version}.raw`)),
      })),
    });
    server = await startReleaseServer(release);
    port = await freePort();

    usrMount = flatcarUsr(host, OS);
    const etcFiles: Record<string, EtcEntry> = {
      ...projectUnits({ [DAEMON_UNIT]: "" }),
      "systemd/system/sysinit.target.wants/systemd-sysext.service": {
        symlink: "/usr/lib/systemd/system/systemd-sysext.service",
      },
      // First pass: Kata 3.33 not allowed yet, so nothing holds the companion back from its newest release.
      "kata-sysextd/config.toml": config("<3.33.0"),
    };
    c = await bootContainer({
      etcFiles,
      loopDevices: true,
      kvm: false,
      etcDir: join(host, "etc"),
      binds: [
        { host: usrMount, container: "/usr", readOnly: true },
        { host: REPO, container: CHECKOUT, readOnly: true },
      ],
      bootTimeoutMs: 60_000,
    });
    timings.bootMs = c.bootMs;
    if (process.env.KATA_E2E_DEBUG) console.error(`kata-sysextd e2e: ${c.debugCommand}`);
  }, BOOT_TIMEOUT_MS);

  afterAll(async () => {
    await c?.dispose();
    await server?.close();
    if (usrMount) unmountUsr(usrMount);
    if (host) rmSync(host, { recursive: true, force: true });
    timings.totalMs = Date.now() - started;
    console.log(`e2e companions timings: ${JSON.stringify(timings)}`);
  });

  it(
    "the first pass links and merges Kata 3.32.0 with the newest companion, v53.0",
    async () => {
      const t0 = Date.now();
      await c.waitForUnit(DAEMON_UNIT, "active", STEP_TIMEOUT_MS);
      const doc = await statusUntil((d) => d.lastReconcile !== null && settled(d));
      timings.firstPassMs = Date.now() - t0;
      expect(doc.lastReconcile).toMatchObject({ result: "ok", error: null });
      await expectMergedSet("3.32.0", "v53.0");
      expect(doc.extension).toMatchObject({ name: KATA, active: "3.32.0", merged: true });
      expect(doc.members).toEqual([
        expect.objectContaining({ name: KATA, active: "3.32.0", merged: true }),
        expect.objectContaining({ name: CH, active: "v53.0", merged: true }),
      ]);
      expect(await activations()).toEqual([
        { name: KATA, version: "3.32.0", previous: "" },
        { name: CH, version: "v53.0", previous: "" },
      ]);
      await expectOneJointMerge({ used: [], jobs: 0 });
    },
    2 * STEP_TIMEOUT_MS,
  );

  it(
    "allowing Kata 3.33 moves both members in one activation: 3.33.0 with v52.0, merged together",
    async () => {
      const before = { activations: (await activations()).length, merges: await merges() };
      writeFileSync(join(host, "etc/kata-sysextd/config.toml"), config(">=3.30.0"));
      const t0 = Date.now();
      // The daemon also watches its configuration file; the reload is what an operator does, and either starts
      // the pass that resolves the new set.
      await sh(["systemctl", "reload", DAEMON_UNIT]);
      const doc = await statusUntil((d) => activeOf(d, KATA) === "3.33.0" && settled(d));
      timings.upgradeMs = Date.now() - t0;
      expect(doc.lastReconcile).toMatchObject({ result: "ok", error: null });
      await expectMergedSet("3.33.0", "v52.0");
      expect(doc.members).toEqual([
        expect.objectContaining({ name: KATA, active: "3.33.0", previous: "3.32.0", merged: true }),
        expect.objectContaining({ name: CH, active: "v52.0", previous: "v53.0", merged: true }),
      ]);
      // One switch for the set: an activation record per member, and one systemd-sysext run merging both.
      expect((await activations()).slice(before.activations)).toEqual([
        { name: KATA, version: "3.33.0", previous: "kata-containers-3.32.0-x86-64.raw" },
        { name: CH, version: "v52.0", previous: "cloud-hypervisor-v53.0-x86-64.raw" },
      ]);
      await expectOneJointMerge(before.merges);
    },
    2 * STEP_TIMEOUT_MS,
  );

  it(
    "kata-sysextctl rollback takes both back together: 3.32.0 with v53.0",
    async () => {
      const before = { activations: (await activations()).length, merges: await merges() };
      const t0 = Date.now();
      const rolled = await ctl("rollback");
      timings.rollbackMs = Date.now() - t0;
      expect(rolled.exitCode, `${rolled.stdout}${rolled.stderr}`).toBe(0);
      await expectMergedSet("3.32.0", "v53.0");
      const doc = await statusUntil((d) => settled(d) && activeOf(d, KATA) === "3.32.0");
      expect(doc.members).toEqual([
        expect.objectContaining({ name: KATA, active: "3.32.0", previous: "3.33.0", merged: true }),
        expect.objectContaining({ name: CH, active: "v53.0", previous: "v52.0", merged: true }),
      ]);
      expect((await activations()).slice(before.activations)).toEqual([
        { name: KATA, version: "3.32.0", previous: "kata-containers-3.33.0-x86-64.raw" },
        { name: CH, version: "v53.0", previous: "cloud-hypervisor-v52.0-x86-64.raw" },
      ]);
      await expectOneJointMerge(before.merges);
      const shown = JSON.parse(await sh([NODE, CTL, "status", "--json"])) as StatusDoc;
      expect(shown.members.map((m) => [m.name, m.active])).toEqual([
        [KATA, "3.32.0"],
        [CH, "v53.0"],
      ]);
      timings.poweroffMs = (await c.poweroff()).ms;
    },
    2 * STEP_TIMEOUT_MS,
  );
});

interface StatusDoc {
  extension: { name: string; active: string | null; merged: boolean; image: string | null };
  members: { name: string; active: string | null; previous: string | null; nextBoot: string | null; merged: boolean }[];
  lastReconcile: { at: string; result: string; error: string | null } | null;
  state: string;
}

interface SysextStatus {
  hierarchy: string;
  extensions: string[] | string;
}
