// sd_notify for a Type=notify service: READY=1, STATUS=, WATCHDOG=1, STOPPING=1.
//
// Why systemd-notify(1): the protocol is one datagram on the AF_UNIX socket named by NOTIFY_SOCKET, and Node has
// no unix datagram sockets (dgram is UDP only; usocket, which dbus-next can use, is SOCK_STREAM only and broken on
// Node 24). systemd's own tool is on every systemd host (Flatcar included), is maintained with the protocol, and
// needs no native build. Two details make it reliable:
//  - `--pid=<our pid>` sends the datagram with our PID in its credentials (root may do that), so systemd
//    attributes it to the main process; and systemd-notify waits for the manager to process the message
//    (BARRIER=1) before it exits, so the sender's cgroup is still known. If credentials cannot be faked
//    (capabilities dropped), the message comes from systemd-notify's own PID: hence NotifyAccess=all in the unit.
//  - One notification at a time, in order: READY=1 must not be overtaken by a later STATUS= or STOPPING=1.
import type { Clock } from "../clock.ts";
import { run } from "../exec.ts";
import type { Logger } from "../log/logger.ts";

export interface Notifier {
  /** False when NOTIFY_SOCKET is unset (not started by systemd as Type=notify): every call is a no-op. */
  readonly enabled: boolean;
  ready(status?: string): Promise<void>;
  status(text: string): Promise<void>;
  watchdog(): Promise<void>;
  stopping(status?: string): Promise<void>;
}

export type NotifyRun = (file: string, args: readonly string[]) => Promise<{ exitCode: number; stderr: string }>;

export interface NotifierOptions {
  log: Logger;
  env?: NodeJS.ProcessEnv;
  pid?: number;
  /** The subprocess runner; defaults to src/exec.ts run with the given env. */
  run?: NotifyRun;
  /** Path or name of the tool. */
  command?: string;
}

/** STATUS= is one line of the datagram: newlines would start new assignments. */
export function statusLine(text: string): string {
  return `STATUS=${text.replace(/[\r\n]+/g, " ").trim()}`;
}

export function createNotifier(options: NotifierOptions): Notifier {
  const env = options.env ?? process.env;
  const pid = options.pid ?? process.pid;
  const command = options.command ?? "systemd-notify";
  const runner: NotifyRun = options.run ?? ((file, args) => run(file, args, { env, timeoutMs: 15_000 }));
  const enabled = (env.NOTIFY_SOCKET ?? "") !== "";
  let queue: Promise<void> = Promise.resolve();

  const send = (assignments: string[]): Promise<void> => {
    if (!enabled) return Promise.resolve();
    const next = queue.then(async () => {
      try {
        const result = await runner(command, [`--pid=${pid}`, ...assignments]);
        if (result.exitCode !== 0) {
          options.log.warning(`${command} ${assignments.join(" ")} exited ${result.exitCode}: ${result.stderr.trim()}`);
        }
      } catch (err) {
        // A lost notification must not take the daemon down; systemd's own timeouts will say so if it matters.
        options.log.warning(`cannot notify systemd (${assignments.join(" ")}): ${String(err)}`);
      }
    });
    queue = next;
    return next;
  };

  return {
    enabled,
    ready: (status) => send(status === undefined ? ["READY=1"] : ["READY=1", statusLine(status)]),
    status: (text) => send([statusLine(text)]),
    watchdog: () => send(["WATCHDOG=1"]),
    stopping: (status) => send(status === undefined ? ["STOPPING=1"] : ["STOPPING=1", statusLine(status)]),
  };
}

/**
 * How often to send WATCHDOG=1: half of WatchdogSec (systemd's advice), or undefined when the watchdog is off or
 * meant for another process (WATCHDOG_PID names a different PID).
 */
export function watchdogIntervalMs(
  env: NodeJS.ProcessEnv = process.env,
  pid: number = process.pid,
): number | undefined {
  const usec = env.WATCHDOG_USEC;
  if (usec === undefined || !/^[0-9]+$/.test(usec)) return undefined;
  const watchdogPid = env.WATCHDOG_PID;
  if (watchdogPid !== undefined && watchdogPid !== "" && watchdogPid !== String(pid)) return undefined;
  const timeoutMs = Number(usec) / 1000;
  if (timeoutMs <= 0) return undefined;
  return Math.max(1, Math.floor(timeoutMs / 2));
}

/**
 * Pings the watchdog every intervalMs from the event loop, so a wedged loop stops the pings and systemd restarts
 * us. No-op without an interval. Returns the stop function (call it before STOPPING=1).
 */
export function startWatchdog(notifier: Notifier, clock: Clock, intervalMs: number | undefined): () => void {
  if (intervalMs === undefined || !notifier.enabled) return () => undefined;
  const stop = new AbortController();
  void (async () => {
    while (!stop.signal.aborted) {
      await notifier.watchdog();
      await clock.sleep(intervalMs, stop.signal).catch(() => undefined);
    }
  })();
  return () => stop.abort();
}
