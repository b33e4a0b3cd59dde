// The systemd Manager adapter against a real dbus-daemon and a fake systemd speaking the real interface.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { systemClock } from "../../../src/clock.ts";
import { createLogger } from "../../../src/log/logger.ts";
import type { Bus } from "../../../src/systemd/bus.ts";
import {
  createSystemdManager,
  JOB_RESULTS,
  type ManagerOptions,
  type SystemdManager,
  UnitJobError,
} from "../../../src/systemd/manager.ts";
import { inbox, rejection, startTestBus, type TestBus } from "../../helpers/dbus.ts";
import { type FakeSystemd, startFakeSystemd } from "../../helpers/fake-systemd.ts";

const quiet = createLogger(() => undefined);
let testBus: TestBus;
let bus: Bus;
let systemd: FakeSystemd;
let manager: SystemdManager | undefined;

beforeEach(async () => {
  testBus = await startTestBus();
  systemd = await startFakeSystemd({ address: testBus.address });
  bus = testBus.client();
});

afterEach(async () => {
  manager?.close();
  manager = undefined;
  await systemd.stop();
  await bus.close();
  await testBus.stop();
});

async function connect(options: ManagerOptions = {}): Promise<SystemdManager> {
  manager = await createSystemdManager(bus, quiet, systemClock, { confirmIntervalMs: 50, ...options });
  return manager;
}

describe("systemd Manager jobs", () => {
  it("subscribes, then starts a unit and returns once its job is done", async () => {
    const m = await connect();
    systemd.script("containerd.service", { delayMs: 100 });
    await m.startUnit("containerd.service");
    expect(systemd.calls).toEqual(["Subscribe", "StartUnit containerd.service replace"]);
    expect(await m.unitState("containerd.service")).toEqual({ activeState: "active", subState: "running" });
  });

  it.each(JOB_RESULTS.filter((r) => r !== "done"))(
    "a job ending with %s is an error carrying that result",
    async (result) => {
      const m = await connect();
      systemd.script("containerd.service", { result });
      const err = await rejection(m.restartUnit("containerd.service"));
      expect(err).toBeInstanceOf(UnitJobError);
      expect(err.code).toBe("unit-job-failed");
      expect((err as UnitJobError).result).toBe(result);
      expect(err.message).toContain(`"${result}"`);
    },
  );

  it("keeps a JobRemoved that overtook the method reply", async () => {
    const m = await connect();
    systemd.script("a.service", { removeBeforeReply: true });
    systemd.script("b.service", { removeBeforeReply: true, result: "dependency" });
    await m.startUnit("a.service");
    expect((await rejection(m.startUnit("b.service"))).message).toContain('"dependency"');
  });

  it("tracks concurrent jobs to their own results", async () => {
    const m = await connect();
    systemd.script("slow.service", { delayMs: 200 });
    systemd.script("fast.service", { result: "failed" });
    const [slow, fast] = await Promise.allSettled([m.startUnit("slow.service"), m.stopUnit("fast.service")]);
    expect(slow.status).toBe("fulfilled");
    expect(fast.status === "rejected" && (fast.reason as UnitJobError).result).toBe("failed");
  });

  it("follows a job that systemd merged two requests into, for both callers", async () => {
    const m = await connect();
    systemd.script("containerd.service", { delayMs: 200 });
    systemd.script("containerd.service", { mergeIntoRunning: true });
    await Promise.all([m.restartUnit("containerd.service"), m.restartUnit("containerd.service")]);
    expect(systemd.calls.filter((c) => c.startsWith("RestartUnit"))).toHaveLength(2);
  });

  it("stops a unit", async () => {
    const m = await connect();
    systemd.addUnit("containerd.service", "active", "running");
    await m.stopUnit("containerd.service");
    expect(await m.unitState("containerd.service")).toEqual({ activeState: "inactive", subState: "dead" });
  });

  it("times out a call that is never answered", async () => {
    const m = await connect({ callTimeoutMs: 300 });
    systemd.script("containerd.service", { noReply: true });
    const err = await rejection(m.restartUnit("containerd.service"));
    expect(err.code).toBe("dbus-timeout");
    expect(err.message).toContain("RestartUnit");
    // The connection is still good afterwards.
    await m.startUnit("containerd.service");
  });

  it("times out a job that never ends", async () => {
    const m = await connect({ jobTimeoutMs: 300 });
    systemd.script("containerd.service", { neverFinish: true });
    const err = await rejection(m.startUnit("containerd.service"));
    expect(err.code).toBe("dbus-timeout");
    expect(err.message).toContain("did not finish");
  });

  it("daemon-reloads", async () => {
    const m = await connect();
    await m.reload();
    expect(systemd.calls).toContain("Reload");
  });
});

describe("systemd unit state", () => {
  it("reads a loaded unit through GetUnit and an unloaded one through LoadUnit", async () => {
    const m = await connect();
    systemd.addUnit("containerd.service", "active", "running");
    expect(await m.unitState("containerd.service")).toEqual({ activeState: "active", subState: "running" });
    expect(await m.unitState("absent.service")).toEqual({ activeState: "inactive", subState: "dead" });
    expect(systemd.calls).toEqual([
      "Subscribe",
      "GetUnit containerd.service",
      "GetUnit absent.service",
      "LoadUnit absent.service",
    ]);
  });

  it("confirms a restart once the unit leaves activating", async () => {
    const m = await connect();
    systemd.script("containerd.service", { endState: ["activating", "start"] });
    await m.restartUnit("containerd.service");
    setTimeout(() => systemd.setUnitState("containerd.service", "active", "running"), 150);
    expect(await m.confirmActive("containerd.service")).toEqual({ activeState: "active", subState: "running" });
  });

  it("refuses to confirm a unit that failed after its job", async () => {
    const m = await connect();
    systemd.script("containerd.service", { endState: ["failed", "failed"] });
    await m.restartUnit("containerd.service");
    const err = await rejection(m.confirmActive("containerd.service"));
    expect(err.code).toBe("unit-not-active");
    expect(err.message).toContain("failed");
  });

  it("gives up confirming after a bounded number of tries", async () => {
    const m = await connect({ confirmTries: 3 });
    systemd.addUnit("slow.service", "activating", "start");
    const err = await rejection(m.confirmActive("slow.service"));
    expect(err.code).toBe("unit-not-active");
    expect(err.message).toContain("activating");
  });
});

describe("systemd Manager across a bus restart", () => {
  it("fails a job wait when the bus dies, then subscribes again and works after reconnect", async () => {
    const m = await connect();
    const reconnected = inbox<true>();
    bus.on("reconnected", () => reconnected.push(true));
    systemd.script("containerd.service", { neverFinish: true });
    const waiting = rejection(m.restartUnit("containerd.service"));
    // Let the job be queued before the bus goes away.
    for (let i = 0; i < 100 && !systemd.calls.includes("RestartUnit containerd.service replace"); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await testBus.kill();
    expect((await waiting).code).toBe("dbus-failed");

    await testBus.restart();
    await systemd.stop();
    systemd = await startFakeSystemd({ address: testBus.address });
    await reconnected.next("reconnected");
    // Subscribe is sent on reconnect; wait (bounded) for it to reach the new systemd.
    for (let i = 0; i < 100 && !systemd.calls.includes("Subscribe"); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(systemd.calls).toContain("Subscribe");
    await m.restartUnit("containerd.service");
    expect(await m.confirmActive("containerd.service")).toEqual({ activeState: "active", subState: "running" });
  });
});
