// A stand-in for Flatcar's update_engine speaking its real D-Bus interface: it owns com.coreos.update1 and exports
// com.coreos.update1.Manager at /com/coreos/update1 with GetStatus() -> (xdssx) and signal StatusUpdate (xdssx).
// Used by the integration tests on a private dbus-daemon, and standalone on a real system bus (the nspawn e2e
// tests run it inside the container after dropping a bus policy that allows owning the name):
//
//   node test/helpers/fake-update-engine.ts --emit UPDATE_STATUS_UPDATED_NEED_REBOOT --version 4650.0.0
//
// Options: --address ADDR (default: DBUS_SYSTEM_BUS_ADDRESS or the system bus), --emit OP (repeatable; each one
// becomes the status and is signalled, in order), --version V (new_version), --size N (new_size),
// --interval-ms N (between emits, default 200). It prints "ready" once it owns the name and has emitted, then
// keeps serving GetStatus until SIGTERM/SIGINT.
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { interface as dbusInterface, type MessageBus } from "dbus-next";
import {
  UPDATE_ENGINE_IFACE,
  UPDATE_ENGINE_NAME,
  UPDATE_ENGINE_PATH,
  UPDATE_OPERATIONS,
  UPDATE_STATUS_SIGNATURE,
  type UpdateStatus,
} from "../../src/systemd/update-engine.ts";
import { serveName } from "./dbus.ts";

type Wire = [number, number, string, string, number];

const toWire = (s: UpdateStatus): Wire => [s.lastCheckedTime, s.progress, s.operation, s.newVersion, s.newSize];

class UpdateManager extends dbusInterface.Interface {
  status: UpdateStatus = {
    lastCheckedTime: 0,
    progress: 0,
    operation: "UPDATE_STATUS_IDLE",
    newVersion: "",
    newSize: 0,
  };

  GetStatus(): Wire {
    return toWire(this.status);
  }

  StatusUpdate(status: UpdateStatus): Wire {
    return toWire(status);
  }
}

UpdateManager.configureMembers({
  methods: { GetStatus: { inSignature: "", outSignature: UPDATE_STATUS_SIGNATURE } },
  signals: { StatusUpdate: { signature: UPDATE_STATUS_SIGNATURE } },
});

export interface FakeUpdateEngine {
  /** What GetStatus answers now. */
  readonly status: UpdateStatus;
  /** Changes the status and emits StatusUpdate with it. */
  emit(change: Partial<UpdateStatus>): void;
  /** Releases the name and disconnects (update_engine going away). */
  stop(): Promise<void>;
}

export interface FakeUpdateEngineOptions {
  /** A D-Bus address; without it the system bus. */
  address?: string;
  initial?: Partial<UpdateStatus>;
}

export async function startFakeUpdateEngine(options: FakeUpdateEngineOptions = {}): Promise<FakeUpdateEngine> {
  const manager = new UpdateManager(UPDATE_ENGINE_IFACE);
  manager.status = { ...manager.status, ...options.initial };
  const bus: MessageBus = await serveName(options.address, UPDATE_ENGINE_NAME, [[UPDATE_ENGINE_PATH, manager]]);
  return {
    get status() {
      return manager.status;
    },
    emit(change) {
      manager.status = { ...manager.status, ...change };
      manager.StatusUpdate(manager.status);
    },
    async stop() {
      // On a dead bus the reply never comes; do not wait for it long.
      const released = bus.releaseName(UPDATE_ENGINE_NAME).catch(() => undefined);
      await Promise.race([released, new Promise((resolve) => setTimeout(resolve, 500))]);
      bus.disconnect();
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      address: { type: "string" },
      emit: { type: "string", multiple: true, default: [] },
      version: { type: "string", default: "" },
      size: { type: "string", default: "0" },
      "interval-ms": { type: "string", default: "200" },
    },
  });
  const operations = values.emit.map((op) => {
    const known = UPDATE_OPERATIONS.find((o) => o === op);
    if (known === undefined) throw new Error(`--emit: unknown operation ${op}; one of ${UPDATE_OPERATIONS.join(", ")}`);
    return known;
  });
  const engine = await startFakeUpdateEngine(values.address === undefined ? {} : { address: values.address });
  const intervalMs = Number(values["interval-ms"]);
  for (const operation of operations) {
    engine.emit({
      operation,
      newVersion: values.version,
      newSize: Number(values.size),
      progress: operation === "UPDATE_STATUS_UPDATED_NEED_REBOOT" ? 1 : 0,
      lastCheckedTime: Math.floor(Date.now() / 1000),
    });
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  process.stdout.write("ready\n");
  const stop = (): void => {
    void engine.stop().then(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

const invoked = process.argv[1] === undefined ? "" : realpathSync(process.argv[1]);
if (invoked === realpathSync(fileURLToPath(import.meta.url))) {
  main().catch((err: unknown) => {
    process.stderr.write(`fake-update-engine: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
