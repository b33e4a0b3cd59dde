// The one system-bus client. dbus-next speaks the protocol; this adds what a long-running daemon needs on top:
// a timeout on every call, detection of a lost connection and reconnection with backoff, signal subscriptions
// whose match rules are registered once per rule (dbus-next's own refcount check is inverted, so it adds a rule
// on every listen and never removes one) and re-registered after a reconnect, and plain JS values at the edge
// (int64/uint64 arrive as BigInt, variants as objects).
import { Message, type MessageBus, MessageType } from "dbus-next";
import { type BackoffOptions, backoffDelay, type Clock, type Random } from "../clock.ts";
import { KataError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { type BusSignal, matches, matchRule, type SignalMatch } from "./match.ts";
import { DBUS_NAME, DBUS_PATH, type DBusValue, openDBusNext, toPlain } from "./wire.ts";

export interface CallOptions {
  /** Overall budget, including waiting for a (re)connection. Defaults to the bus's defaultTimeoutMs. */
  timeoutMs?: number;
}

export type BusEvent = "connected" | "disconnected" | "reconnected";

export interface Bus {
  call(
    destination: string,
    path: string,
    iface: string,
    member: string,
    signature: string,
    args: readonly DBusValue[],
    options?: CallOptions,
  ): Promise<DBusValue[]>;
  /** Long-lived subscription; survives reconnects. Returns the unsubscribe function. */
  onSignal(match: SignalMatch, listener: (signal: BusSignal) => void): () => void;
  nameHasOwner(name: string, options?: CallOptions): Promise<boolean>;
  /** connected: first connection; disconnected: lost it; reconnected: back, match rules already re-added. */
  on(event: BusEvent, listener: () => void): () => void;
  isConnected(): boolean;
  /** Our unique name on the bus (":1.42") while connected; for logs and diagnostics. */
  uniqueName(): string | undefined;
  close(): Promise<void>;
}

export interface BusOptions {
  /** A D-Bus address; without it the system bus (DBUS_SYSTEM_BUS_ADDRESS, else the standard socket). */
  address?: string;
  clock: Clock;
  random: Random;
  log: Logger;
  defaultTimeoutMs?: number;
  /** Budget for one connection attempt (socket, auth, Hello, AddMatch of every rule). */
  connectTimeoutMs?: number;
  backoff?: BackoffOptions;
}

const DEFAULT_TIMEOUT_MS = 25_000; // libdbus's default reply timeout
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 100, maxMs: 30_000 };

/** dbus-next 0.10.2 internals we rely on: our unique name, the stream's end, dropping a timed-out reply handler. */
interface ClientInternals {
  name: string | null;
  _connection: NodeJS.EventEmitter & { stream: { destroy?: () => void } };
  _methodReturnHandlers: Record<number, unknown>;
}

interface MethodCall {
  destination: string;
  path: string;
  iface: string;
  member: string;
  signature: string;
  args: readonly DBusValue[];
}

interface Subscription {
  match: SignalMatch;
  rule: string;
  listener: (signal: BusSignal) => void;
}

interface PendingCall {
  reject(err: KataError): void;
}

export function createBus(options: BusOptions): Bus {
  const { clock, random, log } = options;
  const defaultTimeoutMs = options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const backoff = options.backoff ?? DEFAULT_BACKOFF;
  const target = options.address ?? process.env.DBUS_SYSTEM_BUS_ADDRESS ?? "the system bus";

  const subscriptions = new Set<Subscription>();
  const ruleCounts = new Map<string, number>();
  const listeners = new Map<BusEvent, Set<() => void>>();
  const pending = new Set<PendingCall>();
  const connectedWaiters = new Set<() => void>();
  const lifetime = new AbortController();
  let client: MessageBus | undefined;
  let everConnected = false;
  let closed = false;

  const emit = (event: BusEvent): void => {
    for (const listener of listeners.get(event) ?? []) {
      try {
        listener();
      } catch (err) {
        log.error(`D-Bus ${event} listener failed: ${String(err)}`);
      }
    }
  };

  const dispatch = (msg: Message): void => {
    if (msg.type !== MessageType.SIGNAL) return;
    const signal: BusSignal = {
      sender: msg.sender,
      path: msg.path,
      iface: msg.interface,
      member: msg.member,
      args: (msg.body ?? []).map(toPlain),
    };
    for (const sub of [...subscriptions]) {
      if (!subscriptions.has(sub) || !matches(sub.match, signal)) continue;
      try {
        sub.listener(signal);
      } catch (err) {
        log.error(`D-Bus signal listener for ${signal.iface}.${signal.member} failed: ${String(err)}`);
      }
    }
  };

  /** Sends one call on the given connection, bounded by timeoutMs. */
  const rawCall = (bus: MessageBus, target: MethodCall, timeoutMs: number): Promise<DBusValue[]> => {
    const { destination, path, iface, member, signature, args } = target;
    const what = `${destination} ${path} ${iface}.${member}`;
    const msg = new Message({ destination, path, interface: iface, member, signature, body: [...args] });
    return new Promise<DBusValue[]>((resolve, reject) => {
      const timer = new AbortController();
      const entry: PendingCall = {
        reject: (err) => {
          timer.abort();
          pending.delete(entry);
          reject(err);
        },
      };
      pending.add(entry);
      clock.sleep(timeoutMs, timer.signal).then(
        () => {
          if (!pending.has(entry)) return;
          pending.delete(entry);
          if (msg.serial !== null) delete (bus as unknown as ClientInternals)._methodReturnHandlers[msg.serial];
          reject(
            new KataError("dbus-timeout", `D-Bus call ${what} got no reply within ${timeoutMs} ms`, {
              remedy: `check that ${destination} is running and responsive (busctl status ${destination})`,
            }),
          );
        },
        () => undefined,
      );
      bus.call(msg).then(
        (reply) => {
          if (!pending.has(entry)) return;
          timer.abort();
          pending.delete(entry);
          resolve((reply?.body ?? []).map(toPlain));
        },
        (err: unknown) => {
          if (!pending.has(entry)) return;
          timer.abort();
          pending.delete(entry);
          const name = (err as { type?: unknown }).type;
          reject(
            new KataError("dbus-failed", `D-Bus call ${what} failed: ${errorText(err)}`, {
              cause: err,
              remedy: typeof name === "string" ? `the service answered ${name}` : undefined,
            }),
          );
        },
      );
    });
  };

  const waitConnected = async (deadlineMs: number): Promise<MessageBus | undefined> => {
    while (client === undefined && !closed) {
      const left = deadlineMs - clock.monotonicMs();
      if (left <= 0) return undefined;
      const wake = new AbortController();
      const done = (): void => wake.abort();
      connectedWaiters.add(done);
      await clock.sleep(left, AbortSignal.any([wake.signal, lifetime.signal])).catch(() => undefined);
      connectedWaiters.delete(done);
    }
    return client;
  };

  const call: Bus["call"] = async (destination, path, iface, member, signature, args, callOptions = {}) => {
    const timeoutMs = callOptions.timeoutMs ?? defaultTimeoutMs;
    if (closed) throw new KataError("dbus-failed", `D-Bus call ${iface}.${member} on a closed bus connection`);
    const started = clock.monotonicMs();
    const bus = await waitConnected(started + timeoutMs);
    if (bus === undefined) {
      throw new KataError(
        "dbus-timeout",
        `D-Bus call ${destination} ${iface}.${member}: not connected to ${target} within ${timeoutMs} ms`,
        { remedy: "check that dbus-daemon (dbus.service) is running" },
      );
    }
    const left = Math.max(1, timeoutMs - (clock.monotonicMs() - started));
    return rawCall(bus, { destination, path, iface, member, signature, args }, left);
  };

  const busDaemonCall = (member: string, rule: string): MethodCall => ({
    destination: DBUS_NAME,
    path: DBUS_PATH,
    iface: DBUS_NAME,
    member,
    signature: "s",
    args: [rule],
  });
  const addMatch = (bus: MessageBus, rule: string): Promise<DBusValue[]> =>
    rawCall(bus, busDaemonCall("AddMatch", rule), connectTimeoutMs);

  const registerRule = (bus: MessageBus, rule: string): void => {
    addMatch(bus, rule).catch((err: unknown) => {
      // A dead connection re-adds every rule on reconnect; anything else is worth a loud line.
      if (client === bus) log.error(`AddMatch ${rule} failed: ${errorText(err)}`);
    });
  };

  /** One attempt: socket, SASL, Hello, then every match rule. Resolves with a ready client and its rules. */
  const connectOnce = async (): Promise<{ bus: MessageBus; rules: Set<string> }> => {
    const bus = openDBusNext(options.address);
    const internals = bus as unknown as ClientInternals;
    // Listen from the start: a signal can share a read with the last AddMatch reply.
    bus.on("message", dispatch);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = new AbortController();
        const fail = (err: unknown): void => {
          timer.abort();
          reject(err instanceof Error ? err : new Error(String(err)));
        };
        bus.once("connect", () => {
          timer.abort();
          resolve();
        });
        bus.on("error", fail);
        internals._connection.once("end", () => fail(new Error("connection closed during handshake")));
        clock.sleep(connectTimeoutMs, AbortSignal.any([timer.signal, lifetime.signal])).then(
          () => fail(new Error(`no Hello reply within ${connectTimeoutMs} ms`)),
          () => fail(new Error("bus client closed")),
        );
      });
      const rules = new Set<string>();
      for (const rule of ruleCounts.keys()) {
        await addMatch(bus, rule);
        rules.add(rule);
      }
      return { bus, rules };
    } catch (err) {
      dispose(bus);
      throw err;
    }
  };

  const dispose = (bus: MessageBus): void => {
    bus.removeAllListeners();
    bus.on("error", () => undefined); // late stream errors of a dead connection are expected
    try {
      bus.disconnect();
    } catch {
      // already closed
    }
    (bus as unknown as ClientInternals)._connection.stream.destroy?.();
  };

  const onLost = (bus: MessageBus, why: string): void => {
    if (client !== bus) return;
    client = undefined;
    dispose(bus);
    const lost = new KataError("dbus-failed", `connection to ${target} lost (${why}) before the reply`, {
      remedy: "retry; the client reconnects by itself",
    });
    for (const entry of [...pending]) entry.reject(lost);
    if (closed) return;
    log.warning(`lost the D-Bus connection to ${target}: ${why}; reconnecting`);
    emit("disconnected");
    void connectLoop();
  };

  const connectLoop = async (): Promise<void> => {
    for (let attempt = 1; !closed; attempt++) {
      try {
        const { bus, rules } = await connectOnce();
        if (closed) {
          dispose(bus);
          return;
        }
        client = bus;
        bus.on("error", (err: unknown) => onLost(bus, errorText(err)));
        (bus as unknown as ClientInternals)._connection.on("end", () => onLost(bus, "the bus closed the connection"));
        // Subscriptions made while connectOnce was finishing have no rule on this connection yet.
        for (const rule of ruleCounts.keys()) if (!rules.has(rule)) registerRule(bus, rule);
        for (const wake of [...connectedWaiters]) wake();
        if (everConnected) log.notice(`reconnected to ${target} after ${attempt} attempt(s)`);
        emit(everConnected ? "reconnected" : "connected");
        everConnected = true;
        return;
      } catch (err) {
        const delay = backoffDelay(attempt - 1, random, backoff);
        const say = attempt === 1 ? log.warning : log.debug;
        say(`cannot connect to ${target}: ${errorText(err)}; retrying in ${delay} ms`, { ATTEMPT: attempt });
        await clock.sleep(delay, lifetime.signal).catch(() => undefined);
      }
    }
  };

  void connectLoop();

  return {
    call,

    onSignal(match, listener) {
      const sub: Subscription = { match, rule: matchRule(match), listener };
      subscriptions.add(sub);
      const count = ruleCounts.get(sub.rule) ?? 0;
      ruleCounts.set(sub.rule, count + 1);
      if (count === 0 && client !== undefined) registerRule(client, sub.rule);
      return () => {
        if (!subscriptions.delete(sub)) return;
        const left = (ruleCounts.get(sub.rule) ?? 1) - 1;
        if (left > 0) {
          ruleCounts.set(sub.rule, left);
          return;
        }
        ruleCounts.delete(sub.rule);
        const current = client;
        if (current === undefined) return;
        rawCall(current, busDaemonCall("RemoveMatch", sub.rule), defaultTimeoutMs).catch((err: unknown) =>
          log.debug(`RemoveMatch ${sub.rule} failed: ${errorText(err)}`),
        );
      };
    },

    async nameHasOwner(name, callOptions) {
      const [owned] = await call(DBUS_NAME, DBUS_PATH, DBUS_NAME, "NameHasOwner", "s", [name], callOptions);
      return owned === true;
    },

    on(event, listener) {
      let set = listeners.get(event);
      if (set === undefined) {
        set = new Set();
        listeners.set(event, set);
      }
      set.add(listener);
      return () => set.delete(listener);
    },

    isConnected: () => client !== undefined,
    uniqueName: () => (client === undefined ? undefined : ((client as unknown as ClientInternals).name ?? undefined)),

    async close() {
      if (closed) return;
      closed = true;
      lifetime.abort();
      const bus = client;
      client = undefined;
      const gone = new KataError("dbus-failed", `D-Bus connection to ${target} closed before the reply`);
      for (const entry of [...pending]) entry.reject(gone);
      subscriptions.clear();
      ruleCounts.clear();
      listeners.clear();
      if (bus !== undefined) dispose(bus);
    },
  };
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
