// End-to-end harness: boots the machine's own root as a throw-away container with real systemd as PID 1
// (systemd-nspawn --volatile=yes) and runs commands inside it with nsenter. Facts behind every flag are in
// test/e2e/README.md; the short version: nspawn needs a pseudo-terminal (script), firstboot must be off, and
// squashfs images need loop device nodes bound in.
import { execFile, spawn } from "node:child_process";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { KataError } from "../../src/errors.ts";
import { type ExecResult, run } from "../../src/exec.ts";
import { TMP_BASE_ENV } from "../global-tmp.ts";
import {
  descendantsOf,
  isRunning,
  nspids,
  OWN_LEVEL,
  ownPid,
  procChildrenOf,
  processes,
  procPid,
  readProc,
} from "./proc.ts";

export interface Bind {
  host: string;
  container: string;
  readOnly?: boolean;
}

/** A file for the container's /etc: text, content with a mode, or a symlink (e.g. a unit enablement link). */
export type EtcEntry = string | { content: string | Buffer; mode?: number } | { symlink: string };

export interface BootOptions {
  /** Machine name and hostname; default kata-e2e-<pid>-<n>, unique per test run. */
  name?: string;
  binds?: Bind[];
  /** Host path of a file bound read-only over /usr/lib/os-release (the identity systemd-sysext checks). */
  osRelease?: string;
  /** Bind loop device nodes and /dev/loop-control so squashfs (.raw) extensions can be attached inside. */
  loopDevices?: boolean;
  /** Bind /dev/kvm. Throws when the host has none. */
  kvm?: boolean;
  /** Files (relative to /etc) present before systemd starts: they are written into the host folder bound as /etc. */
  etcFiles?: Record<string, EtcEntry>;
  /**
   * Host folder bound as the container's /etc. Defaults to a fresh temporary folder removed at poweroff; pass
   * your own to keep /etc across boots (a "reboot" is poweroff and a second boot with the same etcDir).
   */
  etcDir?: string;
  /** Console log (the boot messages). Default: $TMPDIR/<name>.console.log, kept only when boot or poweroff fails. */
  log?: string;
  /** Bound on the whole boot, from spawn to `systemctl is-system-running` = running|degraded. Default 45 s. */
  bootTimeoutMs?: number;
  /** How long to wait for another process's container to finish (one container at a time). Default 180 s. */
  lockTimeoutMs?: number;
}

export interface ExecInOptions {
  timeoutMs?: number;
  /** Added to a clean environment (PATH, LANG): the test process's own environment never leaks in. */
  env?: Record<string, string>;
  input?: string | Buffer;
}

export type JournalEntry = Record<string, unknown>;

export interface PoweroffResult {
  /** True when the container shut down on `systemctl poweroff` within the bound, false when it had to be killed. */
  clean: boolean;
  ms: number;
}

export interface Container {
  readonly name: string;
  /** Host PID of the container's systemd (PID 1 inside). */
  readonly leaderPid: number;
  readonly logFile: string;
  readonly etcDir: string;
  /** Milliseconds from spawn until systemd reported running/degraded. */
  readonly bootMs: number;
  /** Units that had failed when boot finished (the state was "degraded"); empty when "running". */
  readonly failedAtBoot: string[];
  exec(argv: string[], options?: ExecInOptions): Promise<ExecResult>;
  /** exec that throws (with stderr) on a non-zero exit. */
  check(argv: string[], options?: ExecInOptions): Promise<string>;
  /** Waits until the unit's ActiveState is `state` (e.g. active, inactive, failed). */
  waitForUnit(unit: string, state: string, timeoutMs?: number): Promise<void>;
  /** `journalctl -u UNIT -o json` parsed, after `journalctl --sync` so everything logged so far is in. */
  journal(unit: string): Promise<JournalEntry[]>;
  writeFile(path: string, content: string | Buffer, mode?: number): Promise<void>;
  poweroff(timeoutMs?: number): Promise<PoweroffResult>;
  /** poweroff that never throws: for afterAll. */
  dispose(): Promise<void>;
  /** The command line to get a shell inside, for debugging. */
  readonly debugCommand: string;
}

const CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const LOOP_DEVICES = 16; // a few more than one test needs: LOOP_CTL_GET_FREE may hand out a higher index
// In the machine's temp base, not this run's own TMPDIR (test/global-tmp.ts): it serialises boots across runs.
const LOCK_FILE = join(process.env[TMP_BASE_ENV] ?? tmpdir(), "kata-e2e-nspawn.lock");
let counter = 0;
let lockHeld = 0; // containers of this process holding the cross-process lock

/** Why the harness cannot run here, or null when it can. Tests skip on a reason, never silently. */
export function nspawnUnavailableReason(): string | null {
  if (process.getuid?.() !== 0) return "systemd-nspawn needs root";
  for (const tool of ["/usr/bin/systemd-nspawn", "/usr/bin/script", "/usr/bin/nsenter"]) {
    if (!existsSync(tool)) return `${tool} is not installed (Debian packages systemd-container, util-linux)`;
  }
  if (OWN_LEVEL < 0) return "/proc belongs to a PID namespace this process is not in (no /proc/self)";
  return null;
}

export async function bootContainer(options: BootOptions = {}): Promise<Container> {
  counter += 1;
  const name = options.name ?? `kata-e2e-${process.pid}-${counter}`;
  if (!/^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$/.test(name)) {
    throw new KataError("usage", `container name "${name}" must be a hostname of at most 63 characters`);
  }
  const workDir = mkdtempSync(join(tmpdir(), `${name}-`));
  const etcDir = options.etcDir ?? join(workDir, "etc");
  const logFile = options.log ?? join(tmpdir(), `${name}.console.log`);
  mkdirSync(etcDir, { recursive: true });
  writeEtcFiles(etcDir, options.etcFiles ?? {});

  const releaseLock = await acquireLock(options.lockTimeoutMs ?? 180_000);
  await reapOrphans();
  // Device nodes of our own, outside devtmpfs: the kernel removes devtmpfs loop nodes when another process
  // frees its loop device (systemd does that), and nspawn fails on a bind source that vanished.
  const devDir = options.loopDevices || options.kvm ? `/dev/.${name}` : null;
  const args = [
    "-D",
    "/",
    "--volatile=yes",
    "-M",
    name,
    "--register=no",
    "--keep-unit",
    "--console=passive",
    `--bind=${etcDir}:/etc`,
  ];
  for (const bind of options.binds ?? []) {
    args.push(`--bind${bind.readOnly ? "-ro" : ""}=${bind.host}:${bind.container}`);
  }
  if (options.osRelease) args.push(`--bind-ro=${options.osRelease}:/usr/lib/os-release`);
  if (devDir) {
    try {
      args.push(...(await makeDeviceNodes(devDir, options)));
    } catch (err) {
      rmSync(devDir, { recursive: true, force: true });
      releaseLock();
      throw err;
    }
  }
  args.push("-b", "systemd.unit=multi-user.target", "systemd.firstboot=off");

  // nspawn reads /proc/PID of its own children: over a /proc of another PID namespace it fails ("Failed to get
  // container cgroup path"), so it gets a mount namespace with a /proc of ours. unshare execs nspawn in place.
  const nspawn = OWN_LEVEL > 0 ? ["unshare", "--mount", "--mount-proc", "systemd-nspawn"] : ["systemd-nspawn"];
  const started = Date.now();
  const script = spawn("script", ["-qfc", [...nspawn, ...args].map(shellQuote).join(" "), logFile], {
    detached: true, // setsid: nspawn and the container get a process group we can kill as a whole
    stdio: "ignore",
  });
  script.unref();
  const exited = new Promise<void>((resolve) => script.once("exit", () => resolve()));
  const scriptPid = script.pid ?? 0; // in this process's PID namespace, like every pid Node hands out
  // The two below are /proc's PIDs (see ownPid): nsenter -t takes those.
  let nspawnPid = 0;
  let leaderPid = 0;

  /** The console log stays when something went wrong, and always when the caller chose its path. */
  const cleanup = (keepLog: boolean): void => {
    process.removeListener("exit", onExit);
    killHard(leaderPid, nspawnPid);
    if (scriptPid > 0) sigkill(-scriptPid);
    if (devDir) rmSync(devDir, { recursive: true, force: true });
    rmSync(workDir, { recursive: true, force: true });
    if (!keepLog && options.log === undefined) rmSync(logFile, { force: true });
    releaseLock();
  };
  const onExit = (): void => cleanup(true);
  process.on("exit", onExit);

  const bootTimeoutMs = options.bootTimeoutMs ?? 45_000;
  const deadline = started + bootTimeoutMs;
  const exec = (argv: string[], opts: ExecInOptions = {}) => nsenter(leaderPid, argv, opts);
  let state = "";
  let lastError = ""; // what systemctl inside said besides its state, for the error below
  let scriptProcPid = 0;
  try {
    while (Date.now() < deadline && script.exitCode === null && script.signalCode === null) {
      if (!scriptProcPid) scriptProcPid = procPid(scriptPid);
      if (scriptProcPid && !nspawnPid) {
        // Not necessarily script's child: script runs the command with `$SHELL -c`, and dash (SHELL=/bin/sh, or no
        // SHELL at all) forks it where bash would exec it.
        nspawnPid = descendantsOf(scriptProcPid).find((pid) => comm(pid) === "systemd-nspawn") ?? 0;
      }
      if (nspawnPid && !leaderPid) leaderPid = procChildrenOf(nspawnPid).find(isContainerInit) ?? 0;
      if (leaderPid) {
        const probe = await exec(["systemctl", "is-system-running"], { timeoutMs: 5_000 });
        state = probe.stdout.trim();
        lastError = probe.stderr.trim();
        if (state === "running" || state === "degraded") break;
        // "offline" only means systemctl could not reach the manager yet; these two will not turn into running.
        if (state === "maintenance" || state === "stopping") break;
      }
      await sleep(100);
    }
  } catch (err) {
    cleanup(true);
    throw err;
  }
  if (state !== "running" && state !== "degraded") {
    cleanup(true);
    throw new KataError(
      "internal",
      `container ${name} did not boot after ${Date.now() - started} ms (bound ${bootTimeoutMs} ms, nspawn ${script.exitCode === null ? "running" : `exited ${script.exitCode}`}, ${describeSearch(scriptPid, scriptProcPid, nspawnPid, leaderPid)}, systemd state "${state || "unknown"}"${lastError ? `, systemctl said: ${lastError}` : ""}):\n${tail(logFile)}`,
      { remedy: `read the console log ${logFile}` },
    );
  }
  const bootMs = Date.now() - started;
  if (process.env.KATA_E2E_DEBUG) {
    console.error(`e2e container ${name} up in ${bootMs} ms; console log ${logFile}; shell: ${debugShell(leaderPid)}`);
  }
  const failedAtBoot =
    state === "degraded"
      ? (await exec(["systemctl", "list-units", "--failed", "--plain", "--no-legend"])).stdout
          .split("\n")
          .map((line) => line.split(" ")[0] ?? "")
          .filter(Boolean)
      : [];

  let stopped: PoweroffResult | null = null;
  const check = async (argv: string[], opts: ExecInOptions = {}): Promise<string> => {
    const result = await exec(argv, opts);
    if (result.exitCode !== 0) {
      throw new KataError(
        "subprocess-failed",
        `in ${name}: ${argv.join(" ")} exited ${result.exitCode}: ${result.stderr.trim() || result.stdout.trim()}`,
      );
    }
    return result.stdout;
  };

  const container: Container = {
    name,
    leaderPid,
    logFile,
    etcDir,
    bootMs,
    failedAtBoot,
    debugCommand: debugShell(leaderPid),
    exec,
    check,
    async waitForUnit(unit, wanted, timeoutMs = 15_000) {
      const until = Date.now() + timeoutMs;
      let seen = "";
      while (Date.now() < until) {
        seen = (await exec(["systemctl", "show", "-P", "ActiveState", "--", unit])).stdout.trim();
        if (seen === wanted) return;
        // A unit that failed will not become active by waiting.
        if (seen === "failed" && wanted === "active") break;
        await sleep(100);
      }
      const status = await exec(["systemctl", "status", "--no-pager", "-n", "20", "--", unit]);
      throw new KataError(
        "internal",
        `unit ${unit} in ${name} is "${seen}", wanted "${wanted}" (waited up to ${timeoutMs} ms):\n${status.stdout}`,
      );
    },
    async journal(unit) {
      await check(["journalctl", "--sync"]);
      const out = await check(["journalctl", "-u", unit, "-o", "json", "--no-pager"]);
      return out
        .split("\n")
        .filter((line) => line.trim() !== "")
        .map((line) => JSON.parse(line) as JournalEntry);
    },
    async writeFile(path, content, mode = 0o644) {
      // Not `install /dev/stdin`: Node hands the child a socket, and sockets cannot be reopened via /proc.
      await check(["mkdir", "-p", "--", dirname(path)]);
      await check(["dd", `of=${path}`, "status=none"], { input: content });
      await check(["chmod", mode.toString(8), "--", path]);
    },
    async poweroff(timeoutMs = 30_000) {
      if (stopped) return stopped;
      const begin = Date.now();
      // The manager may drop the connection while shutting down: the exit code says nothing, the exit does.
      await exec(["systemctl", "poweroff"], { timeoutMs: 5_000 }).catch(() => undefined);
      const clean = await Promise.race([exited.then(() => true), sleep(timeoutMs).then(() => false)]);
      cleanup(!clean);
      if (!clean) await Promise.race([exited, sleep(5_000)]);
      stopped = { clean, ms: Date.now() - begin };
      return stopped;
    },
    async dispose() {
      await container.poweroff().catch(() => undefined);
    },
  };
  return container;
}

/** Lets root own `busName` on the container's system bus and everyone talk to it, then reloads dbus-daemon. */
export async function allowBusName(container: Container, busName: string): Promise<void> {
  if (!/^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)+$/.test(busName)) {
    throw new KataError("usage", `"${busName}" is not a well-known D-Bus name`);
  }
  const policy = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <policy user="root">
    <allow own="${busName}"/>
  </policy>
  <policy context="default">
    <allow send_destination="${busName}"/>
    <allow receive_sender="${busName}"/>
  </policy>
</busconfig>
`;
  await container.writeFile(`/etc/dbus-1/system.d/${busName}.conf`, policy);
  // The folder did not exist when dbus-daemon started, so its inotify watch cannot see the new file.
  await container.check([
    "busctl",
    "call",
    "org.freedesktop.DBus",
    "/org/freedesktop/DBus",
    "org.freedesktop.DBus",
    "ReloadConfig",
  ]);
}

function nsenter(pid: number, argv: string[], options: ExecInOptions): Promise<ExecResult> {
  const { timeoutMs = 30_000, env = {}, input } = options;
  const nsArgs = ["-t", String(pid), "-m", "-p", "-u", "-i", "-n", "--", ...argv];
  return new Promise((resolve, reject) => {
    // src/exec.ts `run` has no stdin; this is the same call plus input.
    const child = execFile(
      "nsenter",
      nsArgs,
      {
        timeout: timeoutMs,
        env: { PATH: CLEAN_PATH, LANG: "C.UTF-8", ...env },
        maxBuffer: 64 * 1024 * 1024,
        encoding: "utf8",
        killSignal: "SIGKILL",
      },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== "number") {
          const why = error.killed ? `timed out after ${timeoutMs} ms` : error.message;
          reject(new KataError("subprocess-failed", `in container (pid ${pid}): ${argv.join(" ")}: ${why}`));
          return;
        }
        resolve({ stdout, stderr, exitCode: error && typeof error.code === "number" ? error.code : 0 });
      },
    );
    child.stdin?.on("error", () => undefined); // a command that does not read its input closes the pipe early
    child.stdin?.end(input);
  });
}

function writeEtcFiles(etcDir: string, files: Record<string, EtcEntry>): void {
  for (const [path, entry] of Object.entries(files)) {
    const full = join(etcDir, path);
    mkdirSync(dirname(full), { recursive: true });
    rmSync(full, { force: true });
    if (typeof entry === "object" && "symlink" in entry) {
      symlinkSync(entry.symlink, full);
      continue;
    }
    const { content, mode = 0o644 } = typeof entry === "string" ? { content: entry } : entry;
    writeFileSync(full, content);
    chmodSync(full, mode);
  }
}

async function makeDeviceNodes(devDir: string, options: BootOptions): Promise<string[]> {
  rmSync(devDir, { recursive: true, force: true });
  mkdirSync(devDir, { mode: 0o700 });
  const args: string[] = [];
  const node = async (file: string, type: "b" | "c", major: number, minor: number, inside: string) => {
    await run("mknod", ["-m", "0660", join(devDir, file), type, String(major), String(minor)], { check: true });
    args.push(`--bind=${join(devDir, file)}:${inside}`);
  };
  if (options.loopDevices) {
    await node("loop-control", "c", 10, 237, "/dev/loop-control");
    for (let n = 0; n < LOOP_DEVICES; n++) await node(`loop${n}`, "b", 7, n, `/dev/loop${n}`);
    // Only effective when nspawn registers a scope (not with --register=no), kept so that mode works too.
    args.push("--property=DeviceAllow=block-loop", "--property=DeviceAllow=/dev/loop-control");
  }
  if (options.kvm) {
    if (!existsSync("/dev/kvm")) throw new KataError("usage", "kvm: true, but the host has no /dev/kvm");
    await node("kvm", "c", 10, 232, "/dev/kvm");
    args.push("--property=DeviceAllow=/dev/kvm rw");
  }
  return args;
}

/** One container at a time across vitest workers: two booting systemds on 2 cores only slow each other down. */
async function acquireLock(timeoutMs: number): Promise<() => void> {
  const until = Date.now() + timeoutMs;
  while (lockHeld === 0) {
    try {
      const fd = openSync(LOCK_FILE, "wx");
      writeSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const holder = Number(readProc(LOCK_FILE).trim() || "0");
    if (!isAlive(holder)) {
      rmSync(LOCK_FILE, { force: true });
      continue;
    }
    if (Date.now() > until) {
      throw new KataError("internal", `process ${holder} still runs an e2e container after ${timeoutMs} ms`, {
        remedy: `remove ${LOCK_FILE} if that process is not a test`,
      });
    }
    await sleep(250);
  }
  // Containers of this process may run back to back or side by side; the file goes with the last one.
  lockHeld += 1;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    lockHeld -= 1;
    if (lockHeld === 0) rmSync(LOCK_FILE, { force: true });
  };
}

function isAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Synchronous, so it also works from a process 'exit' hook. Killing PID 1 of a namespace kills all in it.
 * Both arguments are /proc PIDs; `groups` are process group leaders.
 */
function killHard(leaderPid: number, ...groups: number[]): void {
  if (leaderPid > 0 && isContainerInit(leaderPid)) sigkill(ownPid(leaderPid));
  for (const pid of groups) {
    const own = ownPid(pid);
    if (own > 0) sigkill(-own);
  }
}

/** SIGKILL by this process's own PID numbering (negative: a process group). Never 0: that is our own group. */
function sigkill(pid: number): void {
  if (pid === 0) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/**
 * Kills containers left behind by test processes that died without cleaning up (a killed vitest worker runs no
 * exit hooks). Only default-named containers of dead owners are touched.
 */
async function reapOrphans(): Promise<void> {
  const killed: number[] = [];
  for (const pid of processes()) {
    if (comm(pid) !== "systemd-nspawn") continue;
    const argv = readProc(`/proc/${pid}/cmdline`).split("\0");
    const name = argv[argv.indexOf("-M") + 1] ?? "";
    const owner = /^kata-e2e-(\d+)-\d+$/.exec(name)?.[1];
    if (owner === undefined || isAlive(Number(owner))) continue;
    const leader = procChildrenOf(pid).find(isContainerInit) ?? 0;
    killHard(leader, pid);
    killed.push(leader, pid);
    rmSync(`/dev/.${name}`, { recursive: true, force: true });
    for (const dir of readdirSync(tmpdir())) {
      if (dir.startsWith(`${name}-`)) rmSync(join(tmpdir(), dir), { recursive: true, force: true });
    }
  }
  // SIGKILL is asynchronous; wait so the orphan no longer competes for the CPU or loop devices.
  const until = Date.now() + 10_000;
  while (killed.some(isRunning) && Date.now() < until) await sleep(50);
}

/** PID 1 of a PID namespace below ours, running systemd. */
function isContainerInit(pid: number): boolean {
  const nspid = nspids(pid);
  return nspid.length > OWN_LEVEL + 1 && nspid.at(-1) === 1 && comm(pid) === "systemd";
}

/** Which step of finding the container's systemd got how far, for a boot that timed out. */
function describeSearch(scriptPid: number, scriptProcPid: number, nspawnPid: number, leaderPid: number): string {
  const at = (pid: number) => (pid > 0 ? `/proc/${pid}` : "not found");
  return `script pid ${scriptPid} at ${at(scriptProcPid)}, systemd-nspawn ${at(nspawnPid)}, container systemd ${at(leaderPid)}, our PID namespace level in /proc ${OWN_LEVEL}`;
}

function comm(pid: number): string {
  return readProc(`/proc/${pid}/comm`).trim();
}

function debugShell(leaderPid: number): string {
  return `nsenter -t ${leaderPid} -m -p -u -i -n env -i PATH=${CLEAN_PATH} TERM=xterm bash`;
}

function tail(file: string, lines = 30): string {
  return readProc(file).split("\n").slice(-lines).join("\n");
}

function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}
