// Flatcar's update_engine over D-Bus: what the OS updater is doing, so a pending OS update can get its Kata
// image staged before the reboot. Read GetStatus at start, then follow StatusUpdate. update_engine may be absent
// (not Flatcar, or masked): say so once and keep watching for its name to appear.
import type { Logger } from "../log/logger.ts";
import type { Bus } from "./bus.ts";
import { nameOwnerChanged } from "./match.ts";
import { type DBusValue, dbusErrorName } from "./wire.ts";

export const UPDATE_ENGINE_NAME = "com.coreos.update1";
export const UPDATE_ENGINE_PATH = "/com/coreos/update1";
export const UPDATE_ENGINE_IFACE = "com.coreos.update1.Manager";
/** GetStatus() returns and StatusUpdate carries these five values. */
export const UPDATE_STATUS_SIGNATURE = "xdssx";

export const UPDATE_OPERATIONS = [
  "UPDATE_STATUS_IDLE",
  "UPDATE_STATUS_CHECKING_FOR_UPDATE",
  "UPDATE_STATUS_UPDATE_AVAILABLE",
  "UPDATE_STATUS_DOWNLOADING",
  "UPDATE_STATUS_VERIFYING",
  "UPDATE_STATUS_FINALIZING",
  "UPDATE_STATUS_UPDATED_NEED_REBOOT",
  "UPDATE_STATUS_REPORTING_ERROR_EVENT",
] as const;
export type UpdateOperation = (typeof UPDATE_OPERATIONS)[number];

export interface UpdateStatus {
  /** Seconds since the epoch of the last update check (0 when never checked). */
  lastCheckedTime: number;
  /** 0..1 */
  progress: number;
  operation: UpdateOperation;
  /** The Flatcar version being installed; empty until update_engine knows it. */
  newVersion: string;
  newSize: number;
}

/** Parses the five D-Bus values; null when they are not what update_engine sends. */
export function parseUpdateStatus(values: readonly DBusValue[]): UpdateStatus | null {
  const [lastCheckedTime, progress, operation, newVersion, newSize] = values;
  if (
    typeof lastCheckedTime !== "number" ||
    typeof progress !== "number" ||
    typeof newVersion !== "string" ||
    typeof newSize !== "number" ||
    !isUpdateOperation(operation)
  ) {
    return null;
  }
  return { lastCheckedTime, progress, operation, newVersion, newSize };
}

function isUpdateOperation(value: unknown): value is UpdateOperation {
  return typeof value === "string" && (UPDATE_OPERATIONS as readonly string[]).includes(value);
}

export interface UpdateEngineWatch {
  /** Resolves once the first probe settled: a status was delivered, or update_engine was found absent. */
  readonly ready: Promise<void>;
  /** The last status seen, or undefined. */
  last(): UpdateStatus | undefined;
  /** True while update_engine has no owner on the bus. */
  absent(): boolean;
  stop(): void;
}

export interface WatchOptions {
  timeoutMs?: number;
}

/** Calls onStatus with every status update_engine reports, now and later, across its restarts and ours. */
export function watchUpdateEngine(
  bus: Bus,
  log: Logger,
  onStatus: (status: UpdateStatus) => void,
  options: WatchOptions = {},
): UpdateEngineWatch {
  let last: UpdateStatus | undefined;
  let absent = false;
  let stopped = false;
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });

  const deliver = (values: readonly DBusValue[], from: string): void => {
    const status = parseUpdateStatus(values);
    if (status === null) {
      log.warning(`ignoring malformed update_engine ${from}: ${JSON.stringify(values)}`);
      return;
    }
    absent = false;
    last = status;
    try {
      onStatus(status);
    } finally {
      markReady();
    }
  };

  const goneAbsent = (): void => {
    if (!absent) {
      log.notice(`update_engine (${UPDATE_ENGINE_NAME}) is not on the system bus; OS updates will not be followed`, {
        DBUS_NAME: UPDATE_ENGINE_NAME,
      });
    }
    absent = true;
    markReady();
  };

  const probe = async (): Promise<void> => {
    try {
      // Checking the owner first avoids D-Bus activation of a masked update_engine.
      if (!(await bus.nameHasOwner(UPDATE_ENGINE_NAME, options))) {
        goneAbsent();
        return;
      }
      const values = await bus.call(
        UPDATE_ENGINE_NAME,
        UPDATE_ENGINE_PATH,
        UPDATE_ENGINE_IFACE,
        "GetStatus",
        "",
        [],
        options,
      );
      if (!stopped) deliver(values, "GetStatus reply");
    } catch (err) {
      if (stopped) return;
      const name = dbusErrorName(err);
      if (
        name === "org.freedesktop.DBus.Error.ServiceUnknown" ||
        name === "org.freedesktop.DBus.Error.NameHasNoOwner"
      ) {
        goneAbsent();
        return;
      }
      log.warning(`cannot read update_engine status: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  const unsubscribers = [
    bus.onSignal(
      { sender: UPDATE_ENGINE_NAME, path: UPDATE_ENGINE_PATH, iface: UPDATE_ENGINE_IFACE, member: "StatusUpdate" },
      (signal) => deliver(signal.args, "StatusUpdate"),
    ),
    bus.onSignal(nameOwnerChanged(UPDATE_ENGINE_NAME), (signal) => {
      const newOwner = signal.args[2];
      if (typeof newOwner === "string" && newOwner !== "") {
        log.info(`update_engine appeared on the system bus as ${newOwner}`, { DBUS_NAME: UPDATE_ENGINE_NAME });
        void probe();
      } else {
        goneAbsent();
      }
    }),
    // A new connection may have missed signals: read the status again.
    bus.on("reconnected", () => void probe()),
    bus.on("connected", () => void probe()),
  ];

  if (bus.isConnected()) void probe();

  return {
    ready,
    last: () => last,
    absent: () => absent,
    stop() {
      stopped = true;
      for (const unsubscribe of unsubscribers) unsubscribe();
    },
  };
}
