// Signal subscriptions: the rule the bus daemon filters on, and the check we repeat on our side.
import { DBUS_NAME, DBUS_PATH, type DBusValue } from "./wire.ts";

export interface SignalMatch {
  /** Well-known or unique name; the bus daemon filters on it (see matches() for the client side). */
  sender?: string;
  path?: string;
  iface: string;
  member: string;
  /** First string argument, e.g. the name in NameOwnerChanged. */
  arg0?: string;
}

export interface BusSignal {
  sender: string;
  path: string;
  iface: string;
  member: string;
  args: DBusValue[];
}

/** A match rule string; quotes in values are escaped the way the D-Bus spec requires. */
export function matchRule(match: SignalMatch): string {
  const quote = (v: string): string => `'${v.replaceAll("'", "'\\''")}'`;
  const parts = ["type='signal'"];
  if (match.sender !== undefined) parts.push(`sender=${quote(match.sender)}`);
  if (match.path !== undefined) parts.push(`path=${quote(match.path)}`);
  parts.push(`interface=${quote(match.iface)}`, `member=${quote(match.member)}`);
  if (match.arg0 !== undefined) parts.push(`arg0=${quote(match.arg0)}`);
  return parts.join(",");
}

/**
 * Client-side check, needed because one connection carries every rule. A well-known sender cannot be checked
 * here (signals carry the sender's unique name); the bus daemon already applied it for this rule.
 */
export function matches(match: SignalMatch, signal: BusSignal): boolean {
  if (match.iface !== signal.iface || match.member !== signal.member) return false;
  if (match.path !== undefined && match.path !== signal.path) return false;
  if (match.sender !== undefined && (match.sender.startsWith(":") || match.sender === DBUS_NAME)) {
    if (match.sender !== signal.sender) return false;
  }
  if (match.arg0 !== undefined && signal.args[0] !== match.arg0) return false;
  return true;
}

/** The bus daemon's NameOwnerChanged for one name: args are [name, old owner, new owner ("" when gone)]. */
export function nameOwnerChanged(name: string): SignalMatch {
  return { sender: DBUS_NAME, path: DBUS_PATH, iface: DBUS_NAME, member: "NameOwnerChanged", arg0: name };
}
