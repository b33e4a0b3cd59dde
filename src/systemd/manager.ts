// systemd's Manager over D-Bus: start, restart and stop units and wait for the job's real outcome (JobRemoved),
// read a unit's ActiveState/SubState, daemon-reload. A restart is confirmed by reading the state afterwards,
// never assumed from the method reply (which only says a job was queued).
import type { Clock } from "../clock.ts";
import { KataError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { Bus, CallOptions } from "./bus.ts";
import { nameOwnerChanged } from "./match.ts";
import { type DBusValue, dbusErrorName } from "./wire.ts";

export const SYSTEMD_NAME = "org.freedesktop.systemd1";
export const SYSTEMD_PATH = "/org/freedesktop/systemd1";
export const MANAGER_IFACE = "org.freedesktop.systemd1.Manager";
export const UNIT_IFACE = "org.freedesktop.systemd1.Unit";
export const SERVICE_IFACE = "org.freedesktop.systemd1.Service";
const PROPERTIES_IFACE = "org.freedesktop.DBus.Properties";

/** Every result JobRemoved reports (systemd's job_result_to_string); only "done" is success. */
export const JOB_RESULTS = [
  "done",
  "canceled",
  "timeout",
  "failed",
  "dependency",
  "skipped",
  "invalid",
  "assert",
  "unsupported",
  "collected",
  "once",
  "frozen",
] as const;
export type JobResult = (typeof JOB_RESULTS)[number];

export const ACTIVE_STATES = [
  "active",
  "reloading",
  "inactive",
  "failed",
  "activating",
  "deactivating",
  "maintenance",
  "refreshing",
] as const;
export type ActiveState = (typeof ACTIVE_STATES)[number];

export interface UnitState {
  activeState: ActiveState;
  subState: string;
}

/** A unit job that ended with anything but "done". */
export class UnitJobError extends KataError {
  readonly unit: string;
  readonly result: Exclude<JobResult, "done">;

  constructor(unit: string, verb: JobVerb, result: Exclude<JobResult, "done">) {
    super("unit-job-failed", `${verb} of ${unit} ended with result "${result}"`, {
      remedy: `see why with: systemctl status ${unit}; journalctl -u ${unit}`,
    });
    this.name = "UnitJobError";
    this.unit = unit;
    this.result = result;
  }
}

/** What systemd has loaded for a service: its files and the effective ExecStart and Environment after drop-ins. */
export interface ServiceInfo {
  loadState: string;
  fragmentPath: string;
  dropInPaths: string[];
  /** Each ExecStart= command: program, argv as stored (variables unexpanded), and the "-" prefix. */
  execStart: { path: string; argv: string[]; ignoreFailure: boolean }[];
  environment: string[];
  /** 0 when it has no main process. */
  mainPid: number;
}

type JobVerb = "start" | "restart" | "stop";
const METHOD: Record<JobVerb, string> = { start: "StartUnit", restart: "RestartUnit", stop: "StopUnit" };

export interface SystemdManager {
  /** Resolve once the start job finished with "done"; a UnitJobError carries any other result. */
  startUnit(name: string): Promise<void>;
  restartUnit(name: string): Promise<void>;
  stopUnit(name: string): Promise<void>;
  unitState(name: string): Promise<UnitState>;
  serviceInfo(name: string): Promise<ServiceInfo>;
  /** daemon-reload; systemd replies once the reload is complete. */
  reload(): Promise<void>;
  /** Reads ActiveState, waiting out activating/reloading a bounded number of times; throws unless active. */
  confirmActive(name: string): Promise<UnitState>;
  close(): void;
}

export interface ManagerOptions {
  /** Per D-Bus call. */
  callTimeoutMs?: number;
  /** How long a job may run before we stop waiting for its JobRemoved (systemd's own start timeout is 90 s). */
  jobTimeoutMs?: number;
  /** confirmActive polling: tries and spacing while the unit is still activating. */
  confirmTries?: number;
  confirmIntervalMs?: number;
}

/** A result newer than this code: a failure that says what systemd said. */
function unknownResult(unit: string, result: string): KataError {
  return new KataError("unit-job-failed", `job for ${unit} ended with result "${result}", unknown to kata-sysextd`, {
    remedy: `see why with: systemctl status ${unit}`,
  });
}

type Outcome = JobResult | KataError;

interface Waiter {
  settle(result: Outcome): void;
  fail(err: KataError): void;
}

/** Subscribes to systemd's signals (again after every reconnect) and returns the adapter. */
export async function createSystemdManager(
  bus: Bus,
  log: Logger,
  clock: Clock,
  options: ManagerOptions = {},
): Promise<SystemdManager> {
  const call: CallOptions = { timeoutMs: options.callTimeoutMs ?? 25_000 };
  const jobTimeoutMs = options.jobTimeoutMs ?? 120_000;
  const confirmTries = options.confirmTries ?? 20;
  const confirmIntervalMs = options.confirmIntervalMs ?? 500;

  // Concurrent requests for the same unit can be merged by systemd into one job: several waiters per job path.
  const waiters = new Map<string, Set<Waiter>>();
  const allWaiters = (): Waiter[] => [...waiters.values()].flatMap((set) => [...set]);
  // JobRemoved can overtake the reply that names the job; keep results seen while a request is outstanding.
  const early = new Map<string, Outcome>();
  let requestsInFlight = 0;

  const managerCall = (member: string, signature: string, args: readonly DBusValue[]): Promise<DBusValue[]> =>
    bus.call(SYSTEMD_NAME, SYSTEMD_PATH, MANAGER_IFACE, member, signature, args, call);

  const subscribe = async (): Promise<void> => {
    try {
      await managerCall("Subscribe", "", []);
    } catch (err) {
      if (dbusErrorName(err) !== "org.freedesktop.systemd1.AlreadySubscribed") throw err;
    }
  };
  const resubscribe = (why: string): void => {
    subscribe().catch((err: unknown) => log.error(`systemd Subscribe ${why} failed: ${String(err)}`));
  };

  const unsubscribers = [
    bus.onSignal({ sender: SYSTEMD_NAME, path: SYSTEMD_PATH, iface: MANAGER_IFACE, member: "JobRemoved" }, (s) => {
      const [, job, unit, result] = s.args;
      if (typeof job !== "string" || typeof result !== "string") {
        log.warning(`ignoring malformed JobRemoved: ${JSON.stringify(s.args)}`);
        return;
      }
      log.debug(`job ${job} for ${String(unit)} removed: ${result}`);
      const outcome = isJobResult(result) ? result : unknownResult(String(unit), result);
      const waiting = waiters.get(job);
      if (waiting !== undefined) for (const waiter of [...waiting]) waiter.settle(outcome);
      else if (requestsInFlight > 0) early.set(job, outcome);
    }),
    bus.on("disconnected", () => {
      // JobRemoved may be lost with the connection: fail the waits instead of hanging until the job timeout.
      const lost = new KataError("dbus-failed", "lost the system bus while waiting for a systemd job", {
        remedy: "the outcome is unknown; check the unit with systemctl status",
      });
      for (const waiter of allWaiters()) waiter.fail(lost);
    }),
    // Subscriptions belong to a connection: renew them on ours after a reconnect, and when systemd itself comes
    // back to the bus (after dbus-daemon restarts, systemd reconnects on its own schedule).
    bus.on("reconnected", () => resubscribe("after reconnect")),
    bus.onSignal(nameOwnerChanged(SYSTEMD_NAME), (s) => {
      if (typeof s.args[2] === "string" && s.args[2] !== "") resubscribe("after systemd reappeared");
    }),
  ];

  try {
    await subscribe();
  } catch (err) {
    for (const unsubscribe of unsubscribers) unsubscribe();
    throw err;
  }

  const waitJob = (job: string, unit: string, verb: JobVerb): Promise<Outcome> =>
    new Promise<Outcome>((resolve, reject) => {
      const timer = new AbortController();
      const set = waiters.get(job) ?? new Set<Waiter>();
      waiters.set(job, set);
      const done = (): void => {
        timer.abort();
        set.delete(waiter);
        if (set.size === 0) waiters.delete(job);
      };
      const waiter: Waiter = {
        settle: (result) => {
          done();
          resolve(result);
        },
        fail: (err) => {
          done();
          reject(err);
        },
      };
      set.add(waiter);
      clock.sleep(jobTimeoutMs, timer.signal).then(
        () => {
          if (!set.has(waiter)) return;
          done();
          reject(
            new KataError("dbus-timeout", `${verb} of ${unit} (job ${job}) did not finish within ${jobTimeoutMs} ms`, {
              remedy: `see what it waits for with: systemctl list-jobs; systemctl status ${unit}`,
            }),
          );
        },
        () => undefined,
      );
    });

  const runJob = async (verb: JobVerb, unit: string): Promise<void> => {
    requestsInFlight++;
    let job: DBusValue;
    try {
      [job] = await managerCall(METHOD[verb], "ss", [unit, "replace"]);
    } finally {
      requestsInFlight--;
    }
    if (typeof job !== "string") throw new KataError("dbus-failed", `${METHOD[verb]} returned no job path`);
    const seen = early.get(job); // kept for a concurrent request that got the same (merged) job
    if (requestsInFlight === 0) early.clear();
    const result = seen ?? (await waitJob(job, unit, verb));
    if (result instanceof KataError) throw result;
    if (result !== "done") throw new UnitJobError(unit, verb, result);
    log.debug(`${verb} of ${unit} done`, { UNIT: unit });
  };

  const unitPath = async (unit: string): Promise<string> => {
    try {
      const [path] = await managerCall("GetUnit", "s", [unit]);
      if (typeof path === "string") return path;
    } catch (err) {
      if (dbusErrorName(err) !== "org.freedesktop.systemd1.NoSuchUnit") throw err;
    }
    // Not loaded right now: LoadUnit loads it (or reports it not-found) and names its object.
    const [path] = await managerCall("LoadUnit", "s", [unit]);
    if (typeof path !== "string") throw new KataError("dbus-failed", `LoadUnit ${unit} returned no object path`);
    return path;
  };

  const unitProperty = async (path: string, property: string, iface = UNIT_IFACE): Promise<DBusValue> => {
    const [value] = await bus.call(SYSTEMD_NAME, path, PROPERTIES_IFACE, "Get", "ss", [iface, property], call);
    return value;
  };

  const serviceInfo = async (unit: string): Promise<ServiceInfo> => {
    const path = await unitPath(unit);
    const [loadState, fragmentPath, dropInPaths] = await Promise.all(
      ["LoadState", "FragmentPath", "DropInPaths"].map((p) => unitProperty(path, p)),
    );
    if (loadState !== "loaded") {
      return {
        loadState: String(loadState),
        fragmentPath: "",
        dropInPaths: [],
        execStart: [],
        environment: [],
        mainPid: 0,
      };
    }
    const [execStart, environment, mainPid] = await Promise.all(
      ["ExecStart", "Environment", "MainPID"].map((p) => unitProperty(path, p, SERVICE_IFACE)),
    );
    const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x) => typeof x === "string") : []);
    return {
      loadState: String(loadState),
      fragmentPath: typeof fragmentPath === "string" ? fragmentPath : "",
      dropInPaths: strings(dropInPaths),
      // a(sasbttttuii): path, argv, ignore_errors, then timestamps and the last run's pid and status.
      execStart: (Array.isArray(execStart) ? execStart : []).flatMap((cmd: unknown) =>
        Array.isArray(cmd) && typeof cmd[0] === "string"
          ? [{ path: cmd[0], argv: strings(cmd[1]), ignoreFailure: cmd[2] === true }]
          : [],
      ),
      environment: strings(environment),
      mainPid: typeof mainPid === "number" ? mainPid : 0,
    };
  };

  const unitState = async (unit: string): Promise<UnitState> => {
    const path = await unitPath(unit);
    const [activeState, subState] = await Promise.all([
      unitProperty(path, "ActiveState"),
      unitProperty(path, "SubState"),
    ]);
    if (!isActiveState(activeState) || typeof subState !== "string") {
      throw new KataError("dbus-failed", `unexpected state of ${unit}: ${String(activeState)}/${String(subState)}`);
    }
    return { activeState, subState };
  };

  return {
    startUnit: (name) => runJob("start", name),
    restartUnit: (name) => runJob("restart", name),
    stopUnit: (name) => runJob("stop", name),
    unitState,
    serviceInfo,
    async reload() {
      await managerCall("Reload", "", []);
    },
    async confirmActive(name) {
      let state = await unitState(name);
      for (let tries = 1; tries < confirmTries && isTransient(state.activeState); tries++) {
        await clock.sleep(confirmIntervalMs);
        state = await unitState(name);
      }
      if (state.activeState !== "active") {
        throw new KataError("unit-not-active", `${name} is ${state.activeState} (${state.subState}), not active`, {
          remedy: `see why with: systemctl status ${name}; journalctl -u ${name}`,
        });
      }
      return state;
    },
    close() {
      for (const unsubscribe of unsubscribers) unsubscribe();
      const closed = new KataError("dbus-failed", "systemd manager adapter closed while waiting for a job");
      for (const waiter of allWaiters()) waiter.fail(closed);
    },
  };
}

function isJobResult(value: unknown): value is JobResult {
  return typeof value === "string" && (JOB_RESULTS as readonly string[]).includes(value);
}

function isActiveState(value: unknown): value is ActiveState {
  return typeof value === "string" && (ACTIVE_STATES as readonly string[]).includes(value);
}

function isTransient(state: ActiveState): boolean {
  return state === "activating" || state === "reloading" || state === "refreshing";
}
