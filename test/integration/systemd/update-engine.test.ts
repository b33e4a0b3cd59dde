// update_engine following on a real dbus-daemon, with a fake update_engine that speaks com.coreos.update1.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger, type Fields, type Level } from "../../../src/log/logger.ts";
import type { Bus } from "../../../src/systemd/bus.ts";
import { type UpdateStatus, watchUpdateEngine } from "../../../src/systemd/update-engine.ts";
import { inbox, startTestBus, type TestBus } from "../../helpers/dbus.ts";
import { type FakeUpdateEngine, startFakeUpdateEngine } from "../../helpers/fake-update-engine.ts";

interface LogRecord {
  level: Level;
  message: string;
  fields: Fields;
}

let testBus: TestBus;
let bus: Bus;
let logs: LogRecord[];
const engines: FakeUpdateEngine[] = [];

beforeEach(async () => {
  testBus = await startTestBus();
  logs = [];
  bus = testBus.client({
    log: createLogger((level, message, fields) => logs.push({ level, message, fields }), "debug"),
  });
});

afterEach(async () => {
  for (const engine of engines.splice(0)) await engine.stop();
  await bus.close();
  await testBus.stop();
});

async function engine(initial: Partial<UpdateStatus> = {}): Promise<FakeUpdateEngine> {
  const started = await startFakeUpdateEngine({ address: testBus.address, initial });
  engines.push(started);
  return started;
}

describe("watchUpdateEngine", () => {
  it("reads GetStatus at start and follows StatusUpdate signals", async () => {
    const fake = await engine({ operation: "UPDATE_STATUS_IDLE", lastCheckedTime: 1_700_000_000 });
    const statuses = inbox<UpdateStatus>();
    const watch = watchUpdateEngine(
      bus,
      createLogger(() => undefined),
      statuses.push,
    );

    await watch.ready;
    expect(await statuses.next("GetStatus")).toEqual({
      lastCheckedTime: 1_700_000_000,
      progress: 0,
      operation: "UPDATE_STATUS_IDLE",
      newVersion: "",
      newSize: 0,
    });
    expect(watch.absent()).toBe(false);

    fake.emit({ operation: "UPDATE_STATUS_DOWNLOADING", progress: 0.5, newVersion: "4650.0.0", newSize: 2 ** 40 });
    fake.emit({ operation: "UPDATE_STATUS_UPDATED_NEED_REBOOT", progress: 1 });
    const downloading = await statuses.next("DOWNLOADING");
    expect(downloading.operation).toBe("UPDATE_STATUS_DOWNLOADING");
    // int64 arrives as a plain number, past 32 bits.
    expect(downloading.newSize).toBe(2 ** 40);
    expect(await statuses.next("NEED_REBOOT")).toMatchObject({
      operation: "UPDATE_STATUS_UPDATED_NEED_REBOOT",
      newVersion: "4650.0.0",
      progress: 1,
    });
    expect(watch.last()?.operation).toBe("UPDATE_STATUS_UPDATED_NEED_REBOOT");
    watch.stop();
  });

  it("reports absence once, carries on, and picks update_engine up when it appears", async () => {
    const statuses = inbox<UpdateStatus>();
    const watch = watchUpdateEngine(bus, testLog(), statuses.push);
    await watch.ready;
    expect(watch.absent()).toBe(true);
    expect(statuses.received).toEqual([]);

    const fake = await engine({ operation: "UPDATE_STATUS_UPDATED_NEED_REBOOT", newVersion: "4650.0.0" });
    expect(await statuses.next("status after the name appeared")).toMatchObject({
      operation: "UPDATE_STATUS_UPDATED_NEED_REBOOT",
      newVersion: "4650.0.0",
    });
    expect(watch.absent()).toBe(false);

    await fake.stop();
    engines.splice(0);
    // Gone again, and back: one more absence notice, then the new instance's status.
    const again = await engine({ operation: "UPDATE_STATUS_CHECKING_FOR_UPDATE" });
    expect((await statuses.next("status of the second instance")).operation).toBe("UPDATE_STATUS_CHECKING_FOR_UPDATE");
    again.emit({ operation: "UPDATE_STATUS_IDLE" });
    expect((await statuses.next("signal of the second instance")).operation).toBe("UPDATE_STATUS_IDLE");

    const absentNotices = logs.filter((r) => r.message.includes("is not on the system bus"));
    expect(absentNotices.length).toBe(2);
    watch.stop();
  });

  it("re-adds its listeners after the bus daemon is killed and restarted", async () => {
    await engine({ operation: "UPDATE_STATUS_IDLE" });
    const statuses = inbox<UpdateStatus>();
    const reconnected = inbox<true>();
    bus.on("reconnected", () => reconnected.push(true));
    const watch = watchUpdateEngine(bus, testLog(), statuses.push);
    expect((await statuses.next("first status")).operation).toBe("UPDATE_STATUS_IDLE");

    await testBus.kill();
    engines.splice(0); // their connection died with the daemon
    await testBus.restart();
    await reconnected.next("reconnected event");
    expect(bus.isConnected()).toBe(true);

    // A new update_engine on the new daemon: found through NameOwnerChanged, then its signal arrives.
    const fake = await engine({ operation: "UPDATE_STATUS_DOWNLOADING", newVersion: "4650.0.0" });
    expect((await statuses.next("status after reconnect")).operation).toBe("UPDATE_STATUS_DOWNLOADING");
    fake.emit({ operation: "UPDATE_STATUS_UPDATED_NEED_REBOOT", progress: 1 });
    expect((await statuses.next("StatusUpdate after reconnect")).operation).toBe("UPDATE_STATUS_UPDATED_NEED_REBOOT");
    expect(logs.some((r) => r.level === "warning" && r.message.includes("lost the D-Bus connection"))).toBe(true);
    watch.stop();
  });
});

function testLog() {
  return createLogger((level, message, fields) => logs.push({ level, message, fields }), "debug");
}
