// The system-bus client against a real dbus-daemon: match rules (as the daemon itself reports them through
// org.freedesktop.DBus.Debug.Stats), signals, errors, timeouts and surviving a killed bus daemon.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { systemClock } from "../../../src/clock.ts";
import { createLogger } from "../../../src/log/logger.ts";
import { type Bus, createBus } from "../../../src/systemd/bus.ts";
import type { BusSignal } from "../../../src/systemd/match.ts";
import { dbusErrorName, openDBusNext } from "../../../src/systemd/wire.ts";
import { inbox, rejection, startTestBus, type TestBus } from "../../helpers/dbus.ts";

const DBUS = "org.freedesktop.DBus";
const DBUS_PATH = "/org/freedesktop/DBus";

let testBus: TestBus;
const buses: Bus[] = [];

beforeEach(async () => {
  testBus = await startTestBus();
});

afterEach(async () => {
  for (const b of buses.splice(0)) await b.close();
  await testBus.stop();
});

function open(defaultTimeoutMs = 5_000): Bus {
  const bus = testBus.client({ defaultTimeoutMs });
  buses.push(bus);
  return bus;
}

async function connected(bus: Bus): Promise<string> {
  // Any call waits for the connection; Ping to the daemon is the cheapest.
  await bus.call(DBUS, DBUS_PATH, "org.freedesktop.DBus.Peer", "Ping", "", []);
  const name = bus.uniqueName();
  if (name === undefined) throw new Error("connected bus has no unique name");
  return name;
}

/** The match rules the daemon holds for a connection, straight from dbus-daemon's Debug.Stats interface. */
async function rulesOf(observer: Bus, uniqueName: string): Promise<string[]> {
  const [all] = await observer.call(DBUS, DBUS_PATH, "org.freedesktop.DBus.Debug.Stats", "GetAllMatchRules", "", []);
  const rules = (all as Record<string, string[]>)[uniqueName] ?? [];
  return [...rules].sort();
}

// As dbus-daemon prints rules back (its own key order).
const PING_RULE = "type='signal',interface='org.example.Test',member='Ping',path='/org/example/Test'";
const testSignal = { path: "/org/example/Test", iface: "org.example.Test", member: "Ping" };

/** A plain dbus-next connection that emits org.example.Test.Ping(s, x) signals. */
async function emitter(): Promise<{ emit(text: string, n: bigint): void; close(): void }> {
  const raw = openDBusNext(testBus.address);
  raw.on("error", () => undefined);
  await new Promise<void>((resolve) => raw.once("connect", () => resolve()));
  const { Message } = await import("dbus-next");
  return {
    emit: (text, n) =>
      raw.send(Message.newSignal(testSignal.path, testSignal.iface, testSignal.member, "sx", [text, n])),
    close: () => raw.disconnect(),
  };
}

describe("match rules", () => {
  it("adds one rule per distinct match however many listeners share it, and removes it with the last", async () => {
    const bus = open();
    const observer = open();
    const me = await connected(bus);
    await connected(observer);

    const offs = [bus.onSignal(testSignal, () => undefined), bus.onSignal(testSignal, () => undefined)];
    const offArg = bus.onSignal({ ...testSignal, arg0: "it's" }, () => undefined);
    await connected(bus); // AddMatch went out before this call, on the same connection
    expect(await rulesOf(observer, me)).toEqual([PING_RULE, `${PING_RULE},arg0='it'\\''s'`]);

    // Repeated listen/unlisten does not pile up rules (dbus-next's own listeners would add one each time).
    for (let i = 0; i < 20; i++) bus.onSignal(testSignal, () => undefined)();
    for (const off of offs) off();
    offArg();
    await connected(bus);
    expect(await rulesOf(observer, me)).toEqual([]);
  });

  it("delivers signals to every matching listener, with int64 as a number, and isolates a throwing listener", async () => {
    const bus = open();
    await connected(bus);
    const first = inbox<BusSignal>();
    const second = inbox<BusSignal>();
    bus.onSignal(testSignal, () => {
      throw new Error("listener bug");
    });
    bus.onSignal(testSignal, first.push);
    const off = bus.onSignal({ ...testSignal, arg0: "only-this" }, second.push);
    await connected(bus);

    const source = await emitter();
    source.emit("hello", 9_007_199_254_740_000n);
    source.emit("only-this", -1n);
    const got = await first.next("first signal");
    expect(got).toMatchObject({ ...testSignal, args: ["hello", 9_007_199_254_740_000] });
    expect(got.sender).toMatch(/^:1\./);
    expect((await first.next("second signal")).args).toEqual(["only-this", -1]);
    expect((await second.next("arg0-filtered signal")).args).toEqual(["only-this", -1]);
    expect(second.received.length).toBe(1);
    off();
    source.close();
  });
});

describe("calls", () => {
  it("turns a D-Bus error reply into dbus-failed and keeps the error name", async () => {
    const bus = open();
    const err = await rejection(bus.call("org.example.Nobody", "/", "org.example.Nobody", "Hi", "", []));
    expect(err.code).toBe("dbus-failed");
    expect(dbusErrorName(err)).toBe("org.freedesktop.DBus.Error.ServiceUnknown");
  });

  it("answers nameHasOwner", async () => {
    const bus = open();
    expect(await bus.nameHasOwner(DBUS)).toBe(true);
    expect(await bus.nameHasOwner("com.coreos.update1")).toBe(false);
  });

  it("times out when the bus is down, and waits for the reconnection within the budget when it comes back", async () => {
    const bus = open();
    await connected(bus);
    await testBus.kill();
    const err = await rejection(bus.call(DBUS, DBUS_PATH, DBUS, "GetId", "", [], { timeoutMs: 300 }));
    expect(err.code).toBe("dbus-timeout");

    const pending = bus.call(DBUS, DBUS_PATH, DBUS, "GetId", "", [], { timeoutMs: 10_000 });
    await testBus.restart();
    const [id] = await pending;
    expect(id).toMatch(/^[0-9a-f]{32}$/);
  });

  it("rejects calls in flight and later calls once closed", async () => {
    const bus = open();
    await connected(bus);
    await testBus.kill(); // so the call below cannot be answered before close()
    const inFlight = rejection(bus.call(DBUS, DBUS_PATH, DBUS, "GetId", "", []));
    await bus.close();
    expect((await inFlight).code).toMatch(/^dbus-/);
    expect((await rejection(bus.call(DBUS, DBUS_PATH, DBUS, "GetId", "", []))).code).toBe("dbus-failed");
  });
});

describe("reconnection", () => {
  it("re-adds its match rules on the new daemon and tells listeners it reconnected", async () => {
    const bus = open();
    const events = inbox<string>();
    bus.on("connected", () => events.push("connected"));
    bus.on("disconnected", () => events.push("disconnected"));
    bus.on("reconnected", () => events.push("reconnected"));
    const signals = inbox<BusSignal>();
    bus.onSignal(testSignal, signals.push);
    await connected(bus);
    expect(await events.next()).toBe("connected");

    await testBus.kill();
    expect(await events.next()).toBe("disconnected");
    await testBus.restart();
    expect(await events.next()).toBe("reconnected");

    const observer = open();
    await connected(observer);
    const after = await connected(bus);
    expect(await rulesOf(observer, after)).toEqual([PING_RULE]);

    const source = await emitter();
    source.emit("after restart", 1n);
    expect((await signals.next("signal after reconnect")).args).toEqual(["after restart", 1]);
    source.close();
  });

  it("connects when the daemon only shows up later", async () => {
    await testBus.kill();
    const bus = open();
    const events = inbox<string>();
    bus.on("connected", () => events.push("connected"));
    const call = bus.call(DBUS, DBUS_PATH, DBUS, "GetId", "", [], { timeoutMs: 10_000 });
    await testBus.restart();
    expect(await events.next()).toBe("connected");
    expect((await call).length).toBe(1);
  });

  it("stops trying once closed while the daemon is away", async () => {
    await testBus.kill();
    const attempts: string[] = [];
    const bus = createBus({
      address: testBus.address,
      clock: systemClock,
      random: () => 0.5,
      log: createLogger((_, message) => attempts.push(message), "debug"),
      backoff: { initialMs: 10, maxMs: 20 },
    });
    for (let i = 0; i < 200 && attempts.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
    expect(attempts.length).toBeGreaterThanOrEqual(3);
    expect(attempts[0]).toMatch(/cannot connect to unix:path=.*; retrying in 8 ms/);
    await bus.close();
    const seen = attempts.length;
    // Many backoff periods later, nothing more was tried.
    await new Promise((r) => setTimeout(r, 200));
    expect(attempts.length).toBe(seen);
  });
});
