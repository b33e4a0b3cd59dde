import { Variant } from "dbus-next";
import { describe, expect, it } from "vitest";
import { dialAddress, toPlain } from "../../../src/systemd/wire.ts";

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
