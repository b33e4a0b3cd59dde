// A private dbus-daemon for integration tests: the real bus daemon, with a policy that lets a test process own
// org.freedesktop.systemd1 and com.coreos.update1 (any name, in fact). It runs as a child process on a fixed
// socket path, so a test can SIGKILL it and start it again on the same address to exercise reconnection.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { interface as dbusInterface, MessageBus } from "dbus-next";
import { systemClock } from "../../src/clock.ts";
import { KataError } from "../../src/errors.ts";
import { createLogger, type Logger } from "../../src/log/logger.ts";
import { type Bus, createBus } from "../../src/systemd/bus.ts";
import { openDBusNext } from "../../src/systemd/wire.ts";

export interface TestBus {
  /** The D-Bus address, e.g. `unix:path=/tmp/kata-dbus-XXXX/bus.sock`; stable across restart(). */
  readonly address: string;
  /** SIGKILL the daemon, as a crash would: clients see the socket close without a goodbye. */
  kill(): Promise<void>;
  /** Start the daemon again on the same address (after kill()). */
  restart(): Promise<void>;
  /** Stop the daemon for good and remove its directory. */
  stop(): Promise<void>;
  /** Our bus client on it, with short timeouts and reconnect backoff so a failure shows in test time. */
  client(options?: { log?: Logger; defaultTimeoutMs?: number }): Bus;
}

const READY_TIMEOUT_MS = 10_000;

function busConfig(socketPath: string): string {
  // Everything is allowed: the tests are about our client, not about bus policy.
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=${socketPath}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
`;
}

/** Spawns dbus-daemon in the foreground and resolves once it printed its address (it listens by then). */
function spawnDaemon(configPath: string): Promise<{ child: ChildProcess; address: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("dbus-daemon", [`--config-file=${configPath}`, "--nofork", "--print-address=1"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`dbus-daemon did not print its address within ${READY_TIMEOUT_MS} ms: ${stderr}`));
    }, READY_TIMEOUT_MS);
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const newline = stdout.indexOf("\n");
      if (newline >= 0) {
        clearTimeout(timer);
        resolve({ child, address: stdout.slice(0, newline).trim() });
      }
    });
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`dbus-daemon exited early (${code ?? signal}): ${stderr}`));
    });
  });
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

export async function startTestBus(): Promise<TestBus> {
  const dir = await mkdtemp(join(tmpdir(), "kata-dbus-"));
  const socketPath = join(dir, "bus.sock");
  const configPath = join(dir, "bus.conf");
  await writeFile(configPath, busConfig(socketPath));
  let current: ChildProcess | undefined = (await spawnDaemon(configPath)).child;
  const address = `unix:path=${socketPath}`;

  const kill = async (): Promise<void> => {
    const child = current;
    current = undefined;
    if (child === undefined) return;
    child.kill("SIGKILL");
    await waitExit(child);
  };

  return {
    address,
    kill,
    restart: async () => {
      await kill();
      current = (await spawnDaemon(configPath)).child;
    },
    stop: async () => {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
    client: (options = {}) =>
      createBus({
        address,
        clock: systemClock,
        random: () => 0.5,
        log: options.log ?? createLogger(() => undefined),
        defaultTimeoutMs: options.defaultTimeoutMs ?? 5_000,
        backoff: { initialMs: 20, maxMs: 200 },
      }),
  };
}

/**
 * A queue of values pushed by callbacks (signals, status reports), read in order by a test. next() is bounded so a
 * missing event fails the test with a message instead of hanging it.
 */
export interface Inbox<T> {
  push(value: T): void;
  next(what?: string): Promise<T>;
  readonly received: readonly T[];
}

export function inbox<T>(boundMs = 10_000): Inbox<T> {
  const received: T[] = [];
  let read = 0;
  const waiters: Array<() => void> = [];
  return {
    received,
    push(value) {
      received.push(value);
      for (const wake of waiters.splice(0)) wake();
    },
    async next(what = "an event") {
      while (read >= received.length) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`waited ${boundMs} ms for ${what}`)), boundMs);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      const value = received[read] as T;
      read++;
      return value;
    },
  };
}

/** The KataError a promise rejects with; fails the test if it resolves or rejects with anything else. */
export async function rejection(promise: Promise<unknown>): Promise<KataError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof KataError)) throw new Error(`expected a KataError, got ${String(err)}`);
  return err;
}

const DO_NOT_QUEUE = 4; // NameFlag.DO_NOT_QUEUE
const PRIMARY_OWNER = 1; // RequestNameReply.PRIMARY_OWNER

/** A fake service's connection: exports its objects, then owns its well-known name (or throws). */
export async function serveName(
  address: string | undefined,
  name: string,
  objects: ReadonlyArray<[path: string, iface: dbusInterface.Interface]>,
): Promise<MessageBus> {
  const bus = openDBusNext(address);
  bus.on("error", () => undefined); // the tests kill the bus daemon under their services
  for (const [path, iface] of objects) bus.export(path, iface);
  const reply = await bus.requestName(name, DO_NOT_QUEUE);
  if (reply !== PRIMARY_OWNER) {
    bus.disconnect();
    throw new Error(`could not own ${name} (RequestName reply ${reply})`);
  }
  return bus;
}
