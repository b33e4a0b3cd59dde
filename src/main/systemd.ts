// The daemon's link to systemd: the system bus, the Manager adapter, update_engine. Absent is a normal state
// (a dev machine, a container without a bus): the daemon says so once and runs without them.
import { existsSync } from "node:fs";
import type { Clock, Random } from "../clock.ts";
import type { Logger } from "../log/logger.ts";
import type { Bus } from "../systemd/bus.ts";
import type { SystemdManager } from "../systemd/manager.ts";

export interface SystemdLink {
  bus: Bus;
  /** Null under --root: the sandbox root is not this machine's systemd's business. */
  manager: SystemdManager | null;
  close(): Promise<void>;
}

const PROBE_TIMEOUT_MS = 3_000;
const SYSTEM_BUS_SOCKET = "/run/dbus/system_bus_socket";

export async function connectSystemd(opts: {
  clock: Clock;
  random: Random;
  log: Logger;
  /** Manage units (systemd-sysext.service, containerd.service) only on the real host. */
  manageUnits: boolean;
}): Promise<SystemdLink | null> {
  if (process.env.DBUS_SYSTEM_BUS_ADDRESS === undefined && !existsSync(SYSTEM_BUS_SOCKET)) {
    opts.log.notice(`no system bus (${SYSTEM_BUS_SOCKET} is missing); running without systemd and update_engine`);
    return null;
  }
  // dbus-next is only loaded where there is a bus to talk to.
  const [{ createBus }, { createSystemdManager }] = await Promise.all([
    import("../systemd/bus.ts"),
    import("../systemd/manager.ts"),
  ]);
  const bus = createBus({ clock: opts.clock, random: opts.random, log: opts.log, connectTimeoutMs: PROBE_TIMEOUT_MS });
  try {
    await bus.nameHasOwner("org.freedesktop.DBus", { timeoutMs: PROBE_TIMEOUT_MS });
  } catch (err) {
    // There is a bus, it just does not answer yet (dbus-daemon restarting, a slow boot). The client goes on
    // reconnecting, and the update_engine watcher starts following as soon as it connects; only the unit
    // management, chosen once at start, does without systemd until the daemon restarts.
    opts.log.warning(
      `the system bus does not answer yet (${(err as Error).message}); update_engine is followed once it does, units are not managed through systemd until kata-sysextd restarts`,
    );
    return { bus, manager: null, close: () => bus.close() };
  }
  let manager: SystemdManager | null = null;
  if (opts.manageUnits) {
    try {
      manager = await createSystemdManager(bus, opts.log, opts.clock);
    } catch (err) {
      opts.log.notice(`systemd is not on the system bus (${(err as Error).message}); units are not managed`);
    }
  }
  return {
    bus,
    manager,
    async close() {
      manager?.close();
      await bus.close();
    },
  };
}
