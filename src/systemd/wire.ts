// The edge between dbus-next and our code: how we dial the bus, and what its values and errors become in plain JS.
import { type MessageBus, sessionBus, Variant } from "dbus-next";
import { KataError } from "../errors.ts";

export const DBUS_NAME = "org.freedesktop.DBus";
export const DBUS_PATH = "/org/freedesktop/DBus";

/** What a D-Bus value becomes in JS after edge conversion: numbers, strings, booleans, arrays and objects. */
export type DBusValue = unknown;

/** BigInt -> number (lossy above 2^53, e.g. systemd's UINT64_MAX "infinity"), variants unwrapped, recursively. */
export function toPlain(value: unknown): DBusValue {
  if (typeof value === "bigint") return Number(value);
  if (Array.isArray(value)) return value.map(toPlain);
  if (value instanceof Buffer) return value;
  if (value !== null && typeof value === "object") {
    if (value instanceof Variant) return toPlain(value.value);
    const out: Record<string, DBusValue> = {};
    for (const [k, v] of Object.entries(value)) out[k] = toPlain(v);
    return out;
  }
  return value;
}

const DEFAULT_SYSTEM_BUS = "unix:path=/var/run/dbus/system_bus_socket";

/**
 * The address dbus-next should dial. dbus-next 0.10.2 opens `unix:path=` through the optional usocket addon when
 * it loads, and usocket 0.3.0 calls util.isError (removed in Node 23) on every write, so on Node 24 each write
 * throws. Its non-standard `unix:socket=` key opens the same path with net.Socket; we need no fd passing.
 */
export function dialAddress(address: string | undefined): string {
  const chosen = address ?? process.env.DBUS_SYSTEM_BUS_ADDRESS ?? DEFAULT_SYSTEM_BUS;
  return chosen
    .split(";")
    .map((entry) => {
      if (!entry.startsWith("unix:")) return entry;
      const params = entry.slice("unix:".length).split(",");
      return `unix:${params.map((p) => (p.startsWith("path=") ? `socket=${p.slice("path=".length)}` : p)).join(",")}`;
    })
    .join(";");
}

/** A dbus-next client on the given address (default: the system bus), dialled without usocket. */
export function openDBusNext(address?: string): MessageBus {
  return sessionBus({ busAddress: dialAddress(address) });
}

/** The D-Bus error name of a failed call (e.g. org.freedesktop.systemd1.NoSuchUnit), if the service sent one. */
export function dbusErrorName(err: unknown): string | undefined {
  const cause = err instanceof KataError ? err.cause : err;
  const name = (cause as { type?: unknown } | undefined)?.type;
  return typeof name === "string" ? name : undefined;
}
