import { Variant } from "dbus-next";
import { describe, expect, it } from "vitest";
import { type BusSignal, backoffDelayMs, dialAddress, matches, matchRule, toPlain } from "../../../src/systemd/bus.ts";

describe("backoffDelayMs", () => {
  const options = { initialMs: 100, maxMs: 30_000 };
  it.each([
    [1, 1, 100],
    [2, 1, 200],
    [3, 1, 400],
    [9, 1, 25_600],
    [10, 1, 30_000],
    [50, 1, 30_000],
    [1, 0, 50],
    [10, 0, 15_000],
  ])("attempt %i with random %f waits %i ms", (attempt, random, expected) => {
    expect(backoffDelayMs(attempt, () => random, options)).toBe(expected);
  });

  it("stays within [50 %, 100 %] of the capped step for any random value", () => {
    for (let attempt = 1; attempt <= 20; attempt++) {
      for (const r of [0, 0.25, 0.5, 0.999]) {
        const step = Math.min(30_000, 100 * 2 ** (attempt - 1));
        const delay = backoffDelayMs(attempt, () => r, options);
        expect(delay).toBeGreaterThanOrEqual(step / 2);
        expect(delay).toBeLessThanOrEqual(step);
      }
    }
  });
});

describe("toPlain", () => {
  it("turns BigInt into numbers, unwraps variants, recursing through arrays and dicts", () => {
    const wire = [
      5n,
      "s",
      [1n, new Variant("t", 2n)],
      { ActiveState: new Variant("s", "active"), Nested: new Variant("a{sv}", { n: new Variant("x", -3n) }) },
      true,
    ];
    expect(toPlain(wire)).toEqual([5, "s", [1, 2], { ActiveState: "active", Nested: { n: -3 } }, true]);
  });

  it("keeps byte arrays as Buffers", () => {
    const bytes = Buffer.from([1, 2, 3]);
    expect(toPlain(bytes)).toBe(bytes);
  });

  it("is lossy only above 2^53 (systemd's UINT64_MAX becomes a large number, not an error)", () => {
    expect(toPlain(2n ** 53n)).toBe(2 ** 53);
    expect(toPlain(18446744073709551615n)).toBe(2 ** 64);
  });
});

describe("matchRule", () => {
  it("names every given key and escapes quotes", () => {
    expect(
      matchRule({
        sender: "org.freedesktop.DBus",
        path: "/org/freedesktop/DBus",
        iface: "org.freedesktop.DBus",
        member: "NameOwnerChanged",
        arg0: "it's",
      }),
    ).toBe(
      "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',interface='org.freedesktop.DBus'," +
        "member='NameOwnerChanged',arg0='it'\\''s'",
    );
    expect(matchRule({ iface: "a.b", member: "C" })).toBe("type='signal',interface='a.b',member='C'");
  });
});

describe("matches", () => {
  const signal: BusSignal = { sender: ":1.7", path: "/p", iface: "a.b", member: "C", args: ["x", 1] };
  it.each([
    [{ iface: "a.b", member: "C" }, true],
    [{ iface: "a.b", member: "D" }, false],
    [{ iface: "a.c", member: "C" }, false],
    [{ path: "/p", iface: "a.b", member: "C" }, true],
    [{ path: "/q", iface: "a.b", member: "C" }, false],
    [{ sender: ":1.7", iface: "a.b", member: "C" }, true],
    [{ sender: ":1.8", iface: "a.b", member: "C" }, false],
    // A well-known sender is the daemon's to check; the signal only carries the unique name.
    [{ sender: "com.coreos.update1", iface: "a.b", member: "C" }, true],
    [{ sender: "org.freedesktop.DBus", iface: "a.b", member: "C" }, false],
    [{ iface: "a.b", member: "C", arg0: "x" }, true],
    [{ iface: "a.b", member: "C", arg0: "y" }, false],
  ])("%j -> %s", (match, expected) => {
    expect(matches(match, signal)).toBe(expected);
  });
});

describe("dialAddress", () => {
  it("dials unix paths through dbus-next's net.Socket key instead of usocket", () => {
    expect(dialAddress("unix:path=/run/dbus/system_bus_socket")).toBe("unix:socket=/run/dbus/system_bus_socket");
    expect(dialAddress("unix:path=/tmp/b.sock,guid=abc")).toBe("unix:socket=/tmp/b.sock,guid=abc");
    expect(dialAddress("unix:abstract=/x;unix:path=/y")).toBe("unix:abstract=/x;unix:socket=/y");
    expect(dialAddress("tcp:host=127.0.0.1,port=1")).toBe("tcp:host=127.0.0.1,port=1");
  });

  it("defaults to DBUS_SYSTEM_BUS_ADDRESS, then the standard system socket", () => {
    const saved = process.env.DBUS_SYSTEM_BUS_ADDRESS;
    try {
      process.env.DBUS_SYSTEM_BUS_ADDRESS = "unix:path=/elsewhere";
      expect(dialAddress(undefined)).toBe("unix:socket=/elsewhere");
      delete process.env.DBUS_SYSTEM_BUS_ADDRESS;
      expect(dialAddress(undefined)).toBe("unix:socket=/var/run/dbus/system_bus_socket");
    } finally {
      if (saved === undefined) delete process.env.DBUS_SYSTEM_BUS_ADDRESS;
      else process.env.DBUS_SYSTEM_BUS_ADDRESS = saved;
    }
  });
});
