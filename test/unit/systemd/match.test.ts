import { describe, expect, it } from "vitest";
import { type BusSignal, matches, matchRule, nameOwnerChanged } from "../../../src/systemd/match.ts";

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

describe("nameOwnerChanged", () => {
  it("matches the bus daemon's signal for exactly one name", () => {
    expect(matchRule(nameOwnerChanged("com.coreos.update1"))).toBe(
      "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',interface='org.freedesktop.DBus'," +
        "member='NameOwnerChanged',arg0='com.coreos.update1'",
    );
  });
});
