// A sandbox root for running the real daemon with --root, and a private mount namespace to run it in, so
// the real systemd-sysext can merge under the root without touching this machine's /usr (ENVIRONMENT.md).
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { writeOsRelease } from "./images.ts";
import { childrenOf } from "./proc.ts";

export const PROJECT = resolve(import.meta.dirname, "../..");
export const NODE = process.execPath;
export const DAEMON = join(PROJECT, "bin/kata-sysextd.js");
export const CTL = join(PROJECT, "bin/kata-sysextctl.js");

export function makeSandboxRoot(versionId = "4593.2.5"): string {
  const root = mkdtempSync(join(tmpdir(), "kata-root-"));
  writeOsRelease(root, versionId);
  for (const dir of ["etc/extensions", "etc/kata-sysextd", "opt", "var/lib", "run"]) {
    mkdirSync(join(root, dir), { recursive: true });
  }
  return root;
}

/**
 * Writes the sandbox's config.toml. The canary is off unless the test's configuration has a [health] section of
 * its own: a sandbox has no containerd to start a container through (test/integration/canary starts one).
 */
export function writeConfig(root: string, toml: string): string {
  const file = join(root, "etc/kata-sysextd/config.toml");
  writeFileSync(
    file,
    /^\[health\]/m.test(toml)
      ? toml
      : `${toml}${toml.endsWith("\n") || toml === "" ? "" : "\n"}[health]\ncanary = false\n`,
  );
  return file;
}

// systemd-sysext needs /run to be a mount point and the root to be a shared mount; "$@" is the command. $SANDBOX,
// when set, is started in the background first: a stand-in for a running Kata sandbox's shim.
const NAMESPACE_SETUP =
  'mount -t tmpfs tmpfs /run && mount --bind "$R" "$R" && mount --make-shared "$R" && ' +
  '{ [ -z "$SANDBOX" ] || "$SANDBOX" 300 & } && exec "$@"';

/**
 * argv that runs `command` in a private mount namespace prepared for `systemd-sysext --root=root`, as the first
 * process of a PID namespace of its own with its own /proc. With `sandboxShim`, that stand-in for a Kata sandbox
 * runs beside it. A process in a PID namespace is still seen from the host's, so the namespace goes both ways: a
 * daemon or pass only ever counts its own stand-in sandboxes, never those of tests running at the same time.
 * unshare ignores SIGTERM and SIGINT while it waits: signal the command itself (RunningDaemon.signal).
 */
export function inMountNamespace(root: string, command: string[], opts: { sandboxShim?: string } = {}): string[] {
  return [
    "unshare",
    "-m",
    "-p",
    "--fork",
    "--kill-child",
    "--mount-proc",
    "--propagation",
    "private",
    "env",
    `R=${root}`,
    `SANDBOX=${opts.sandboxShim ?? ""}`,
    // The command runs as PID 1 of its namespace, where systemd's tools log to the journal or kmsg instead of
    // stderr: a refused merge would say nothing to the test.
    "SYSTEMD_LOG_TARGET=console",
    "sh",
    "-c",
    NAMESPACE_SETUP,
    "sh",
    ...command,
  ];
}

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

export function runArgv(argv: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error("empty argv");
  return new Promise((done) => {
    execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? 60_000, env: { ...process.env, KATA_SYSEXTD_LOG: "stderr", ...opts.env } },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
        done({ code, stdout, stderr });
      },
    );
  });
}

/** `kata-sysextd --once --root R` in its own mount namespace; `sandboxShim` runs beside it. */
export function daemonOnce(root: string, extra: string[] = [], opts: { sandboxShim?: string } = {}): Promise<Ran> {
  return runArgv(inMountNamespace(root, [NODE, DAEMON, "--once", "--root", root, ...extra], opts));
}

/** The real daemon running with --root in its own mount namespace, its stderr collected. */
export interface RunningDaemon {
  child: ChildProcess;
  stderr(): string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** Signals the daemon (the first process of its PID namespace; `child` is unshare, which ignores SIGTERM). */
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

export function startDaemon(root: string, opts: { sandboxShim?: string; env?: NodeJS.ProcessEnv } = {}): RunningDaemon {
  const [file, ...args] = inMountNamespace(root, [NODE, DAEMON, "--root", root], opts);
  if (file === undefined) throw new Error("no argv");
  const child = spawn(file, args, {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...opts.env, KATA_SYSEXTD_LOG: "stderr" },
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const running = () => child.exitCode === null && child.signalCode === null;
  const signal = (sig: NodeJS.Signals): void => {
    if (!running() || child.pid === undefined) return;
    const [daemon] = childrenOf(child.pid);
    process.kill(daemon ?? child.pid, sig);
  };
  return {
    child,
    stderr: () => stderr,
    exited,
    signal,
    stop() {
      signal("SIGTERM");
      return exited;
    },
  };
}

/** Polls `check` every 100 ms until it holds; the error says what was awaited and shows `context()`. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  context: () => string = () => "",
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await Promise.resolve(check()).catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}\n${context()}`);
}

/**
 * state.json as a kill -9 inside a switch of Kata from `from` to `to` leaves it, on top of what a finished pass
 * wrote: the switch recorded, `previous` not yet.
 */
export function recordInterruptedSwitch(root: string, from: string, to: string): void {
  const stateFile = join(root, "var/lib/kata-sysextd/state.json");
  const state = JSON.parse(readFileSync(stateFile, "utf8"));
  writeFileSync(
    stateFile,
    JSON.stringify({ ...state, previous: {}, switching: [{ member: "kata-containers", from, to }] }),
  );
}
