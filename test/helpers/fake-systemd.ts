// A stand-in for systemd's Manager on a private dbus-daemon, for fast integration tests of the D-Bus adapter (the
// e2e tests use the real systemd in systemd-nspawn). It owns org.freedesktop.systemd1 and exports the real
// interface subset with the real signatures: Subscribe(), StartUnit/RestartUnit/StopUnit(ss) -> o,
// GetUnit(s) -> o, LoadUnit(s) -> o, Reload(); signals JobNew(uos) and JobRemoved(uoss); unit objects under
// /org/freedesktop/systemd1/unit/ with org.freedesktop.systemd1.Unit properties (via
// org.freedesktop.DBus.Properties), services also with org.freedesktop.systemd1.Service's ExecStart, Environment
// and MainPID. Each test scripts how the next job for a unit ends.
import { DBusError, interface as dbusInterface, type MessageBus } from "dbus-next";
import type { ActiveState, JobResult } from "../../src/systemd/manager.ts";
import { serveName } from "./dbus.ts";

const NAME = "org.freedesktop.systemd1";
const PATH = "/org/freedesktop/systemd1";

export interface JobScript {
  /** What JobRemoved reports. Default "done". */
  result?: JobResult;
  /** Milliseconds between the method reply and JobRemoved. Default 0. */
  delayMs?: number;
  /** Emit JobRemoved before the method reply, as a fast job on a busy bus can look to a client. */
  removeBeforeReply?: boolean;
  /** Never answer the method call (to exercise call timeouts). */
  noReply?: boolean;
  /** Reply with a job but never emit JobRemoved. */
  neverFinish?: boolean;
  /** Answer with the unit's job still running, if any, as systemd does when it merges a request into it. */
  mergeIntoRunning?: boolean;
  /** The unit's state once the job ended; default follows from verb and result. */
  endState?: [ActiveState, string];
}

export interface ServiceSpec {
  fragmentPath: string;
  dropInPaths?: string[];
  argv: string[];
  environment?: string[];
  mainPid?: number;
}

export interface FakeSystemd {
  /** How the next job for this unit behaves; scripts queue up per unit. */
  script(unit: string, script: JobScript): void;
  /** Makes a unit known (as if its unit file existed) in this state. */
  addUnit(unit: string, activeState?: ActiveState, subState?: string): void;
  setUnitState(unit: string, activeState: ActiveState, subState: string): void;
  /** What systemd would report about a service's files, command and environment after its drop-ins. */
  setService(unit: string, service: ServiceSpec): void;
  /** Method calls received, e.g. "Subscribe", "RestartUnit containerd.service replace". */
  readonly calls: readonly string[];
  stop(): Promise<void>;
}

/** systemd's object path label escaping (bus_label_escape): [A-Za-z0-9] kept, everything else _xx. */
export function unitObjectPath(unit: string): string {
  const label = [...Buffer.from(unit)]
    .map((b) => {
      const c = String.fromCharCode(b);
      return /[A-Za-z0-9]/.test(c) ? c : `_${b.toString(16).padStart(2, "0")}`;
    })
    .join("");
  return `${PATH}/unit/${label}`;
}

class UnitInterface extends dbusInterface.Interface {
  Id = "";
  LoadState = "loaded";
  ActiveState: ActiveState = "inactive";
  SubState = "dead";
  FragmentPath = "";
  DropInPaths: string[] = [];
}
UnitInterface.configureMembers({
  properties: {
    Id: { signature: "s", access: "read" },
    LoadState: { signature: "s", access: "read" },
    ActiveState: { signature: "s", access: "read" },
    SubState: { signature: "s", access: "read" },
    FragmentPath: { signature: "s", access: "read" },
    DropInPaths: { signature: "as", access: "read" },
  },
});

type ExecCommand = [string, string[], boolean, bigint, bigint, bigint, bigint, number, number, number];

class ServiceInterface extends dbusInterface.Interface {
  ExecStart: ExecCommand[] = [];
  Environment: string[] = [];
  MainPID = 0;
}
ServiceInterface.configureMembers({
  properties: {
    ExecStart: { signature: "a(sasbttttuii)", access: "read" },
    Environment: { signature: "as", access: "read" },
    MainPID: { signature: "u", access: "read" },
  },
});

type Verb = "StartUnit" | "RestartUnit" | "StopUnit";

class ManagerInterface extends dbusInterface.Interface {
  // Set by startFakeSystemd; the methods below only forward to it.
  handler: ManagerHandler | undefined;

  Subscribe(): void {
    this.handler?.record("Subscribe");
  }
  StartUnit(name: string, mode: string): Promise<string> | string {
    return this.need().job("StartUnit", name, mode);
  }
  RestartUnit(name: string, mode: string): Promise<string> | string {
    return this.need().job("RestartUnit", name, mode);
  }
  StopUnit(name: string, mode: string): Promise<string> | string {
    return this.need().job("StopUnit", name, mode);
  }
  GetUnit(name: string): string {
    return this.need().getUnit(name);
  }
  LoadUnit(name: string): string {
    return this.need().loadUnit(name);
  }
  Reload(): void {
    this.handler?.record("Reload");
  }
  JobNew(id: number, job: string, unit: string): [number, string, string] {
    return [id, job, unit];
  }
  JobRemoved(id: number, job: string, unit: string, result: string): [number, string, string, string] {
    return [id, job, unit, result];
  }
  private need(): ManagerHandler {
    if (this.handler === undefined) throw new DBusError("org.freedesktop.DBus.Error.Failed", "not ready");
    return this.handler;
  }
}
ManagerInterface.configureMembers({
  methods: {
    Subscribe: {},
    StartUnit: { inSignature: "ss", outSignature: "o" },
    RestartUnit: { inSignature: "ss", outSignature: "o" },
    StopUnit: { inSignature: "ss", outSignature: "o" },
    GetUnit: { inSignature: "s", outSignature: "o" },
    LoadUnit: { inSignature: "s", outSignature: "o" },
    Reload: {},
  },
  signals: {
    JobNew: { signature: "uos" },
    JobRemoved: { signature: "uoss" },
  },
});

interface ManagerHandler {
  record(call: string): void;
  job(verb: Verb, unit: string, mode: string): Promise<string> | string;
  getUnit(unit: string): string;
  loadUnit(unit: string): string;
}

export interface FakeSystemdOptions {
  address: string;
}

export async function startFakeSystemd(options: FakeSystemdOptions): Promise<FakeSystemd> {
  const manager = new ManagerInterface("org.freedesktop.systemd1.Manager");
  const units = new Map<string, UnitInterface>();
  const services = new Map<string, ServiceInterface>();
  const scripts = new Map<string, JobScript[]>();
  const calls: string[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const runningJobs = new Map<string, string>();
  let nextJobId = 1;

  const unit = (name: string, loadState = "loaded"): UnitInterface => {
    let found = units.get(name);
    if (found === undefined) {
      found = new UnitInterface("org.freedesktop.systemd1.Unit");
      found.Id = name;
      found.LoadState = loadState;
      units.set(name, found);
      bus.export(unitObjectPath(name), found);
    }
    return found;
  };

  const settledState = (verb: Verb, result: JobResult): [ActiveState, string] => {
    if (result === "failed") return ["failed", "failed"];
    if (result !== "done") return ["inactive", "dead"];
    return verb === "StopUnit" ? ["inactive", "dead"] : ["active", "running"];
  };

  manager.handler = {
    record: (call) => calls.push(call),
    job(verb, name, mode) {
      calls.push(`${verb} ${name} ${mode}`);
      const script = scripts.get(name)?.shift() ?? {};
      if (script.noReply) return new Promise<string>(() => undefined);
      const target = unit(name);
      const running = runningJobs.get(name);
      if (script.mergeIntoRunning && running !== undefined) return running;
      const id = nextJobId++;
      const job = `${PATH}/job/${id}`;
      const result = script.result ?? "done";
      manager.JobNew(id, job, name);
      runningJobs.set(name, job);
      const finish = (): void => {
        runningJobs.delete(name);
        const [active, sub] = script.endState ?? settledState(verb, result);
        target.ActiveState = active;
        target.SubState = sub;
        manager.JobRemoved(id, job, name, result);
      };
      if (script.neverFinish) return job;
      if (script.removeBeforeReply) {
        finish();
        return job;
      }
      const timer = setTimeout(() => {
        timers.delete(timer);
        finish();
      }, script.delayMs ?? 0);
      timers.add(timer);
      return job;
    },
    getUnit(name) {
      calls.push(`GetUnit ${name}`);
      if (!units.has(name)) {
        throw new DBusError("org.freedesktop.systemd1.NoSuchUnit", `Unit ${name} not loaded.`);
      }
      return unitObjectPath(name);
    },
    loadUnit(name) {
      calls.push(`LoadUnit ${name}`);
      // Like systemd: an unknown unit still gets an object, with LoadState not-found.
      unit(name, "not-found");
      return unitObjectPath(name);
    },
  };

  const bus: MessageBus = await serveName(options.address, NAME, [[PATH, manager]]);

  return {
    calls,
    script(name, script) {
      const queue = scripts.get(name) ?? [];
      queue.push(script);
      scripts.set(name, queue);
    },
    addUnit(name, activeState = "inactive", subState = "dead") {
      const target = unit(name);
      target.ActiveState = activeState;
      target.SubState = subState;
    },
    setService(name, spec) {
      const target = unit(name);
      target.FragmentPath = spec.fragmentPath;
      target.DropInPaths = spec.dropInPaths ?? [];
      let service = services.get(name);
      if (service === undefined) {
        service = new ServiceInterface("org.freedesktop.systemd1.Service");
        services.set(name, service);
        bus.export(unitObjectPath(name), service);
      }
      service.ExecStart = [[spec.argv[0] ?? "", spec.argv, false, 0n, 0n, 0n, 0n, 0, 0, 0]];
      service.Environment = spec.environment ?? [];
      service.MainPID = spec.mainPid ?? 0;
    },
    setUnitState(name, activeState, subState) {
      const target = unit(name);
      target.ActiveState = activeState;
      target.SubState = subState;
    },
    async stop() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      bus.disconnect();
    },
  };
}
