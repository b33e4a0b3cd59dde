// kata-sysextctl: dispatch to the verb's module. Each verb parses its own options.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { loadConfig } from "../config/load.ts";
import { asKataError } from "../errors.ts";
import { hostPaths } from "../paths.ts";
import { DAEMON_VERSION } from "../version.ts";
import { type CommandIo, EXIT, processIo } from "./io.ts";

const USAGE = `Usage: kata-sysextctl VERB [options]

Verbs:
  status [--json]          the daemon's /status, human or JSON (1 when the daemon is unreachable)
  refresh [--json] [--release-holds]
                           ask the daemon to reconcile now, with progress; --release-holds first lifts
                           the holds of earlier rollbacks
  rollback [--json]        ask the daemon to go back to the previous image
  versions [--json]        local and remote versions, and which would be chosen
  canary [--json]          ask the daemon to start the canary container now, with progress; 0 passed
  preflight [--json] [--root DIR] [--config FILE]
                           run the hypervisor preflight locally (no daemon needed)
  compat --os-release FILE --extension-release FILE|IMAGE [--name NAME] [--arch ARCH] [--json]
                           would systemd-sysext merge this extension on this host? FILE is an
                           extension-release file; an image (.raw, as published or quarantined) is judged
                           by its own extension-release, read as systemd-sysext reads it

status, refresh, rollback, versions and canary also take --root DIR and --config FILE to find a daemon that runs
with --root (its socket is DIR/run/kata-sysextd/api.sock, its TCP address the config's [api] listen).
Without --root they use $KATA_SYSEXTD_ROOT (which \`npm start\` prints), else /, else a running demo's root.
`;

/** The root of a daemon started with --root, for the daemon verbs: what `npm start` tells its user to export. */
export const ROOT_ENV = "KATA_SYSEXTD_ROOT";
/** Where `npm start` runs its daemon, relative to this file in a checkout. */
const DEMO_ROOT = resolve(import.meta.dirname, "../../demo/root");

const DAEMON_VERBS = new Set(["status", "refresh", "rollback", "versions", "canary"]);
const DEFAULT_LISTEN = "127.0.0.1:8720";

export async function main(argv: string[], io: CommandIo = processIo()): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === undefined || verb === "-h" || verb === "--help" || verb === "help") {
    (verb === undefined ? io.stderr : io.stdout).write(USAGE);
    return verb === undefined ? EXIT.usage : EXIT.ok;
  }
  if (verb === "--version") {
    io.stdout.write(`kata-sysextctl ${DAEMON_VERSION}\n`);
    return EXIT.ok;
  }
  if (verb === "compat") {
    const { compatCommand } = await import("./compat.ts");
    return compatCommand(rest, io);
  }
  if (verb === "preflight") {
    const { preflightCommand } = await import("./preflight.ts");
    return preflightCommand(rest, io);
  }
  if (DAEMON_VERBS.has(verb)) {
    const location = takeLocation(rest);
    if ("error" in location) {
      io.stderr.write(`kata-sysextctl: ${location.error}\n`);
      return EXIT.usage;
    }
    const { config, remaining } = location;
    const daemon = locateDaemon(location.root, process.env[ROOT_ENV], existsSync);
    if (daemon.note !== null) io.stderr.write(`kata-sysextctl: ${daemon.note}\n`);
    const paths = hostPaths(daemon.root);
    // The configuration only says where the TCP fallback listens; the socket comes first and needs none. A
    // configuration the daemon would reject must not keep an operator from asking the daemon what is wrong.
    let listen = DEFAULT_LISTEN;
    try {
      listen = (await loadConfig(config ?? paths.configFile, { required: config !== undefined, host: paths.host }))
        .config.api.listen;
    } catch (err) {
      io.stderr.write(
        `kata-sysextctl: warning: ${asKataError(err).message}; the TCP fallback uses ${DEFAULT_LISTEN}\n`,
      );
    }
    const { ctlCommand } = await import("./ctl-client.ts");
    type CtlVerb = Parameters<typeof ctlCommand>[0];
    return ctlCommand(verb as CtlVerb, remaining, io, {
      socketPath: paths.apiSocket,
      tcpUrl: `http://${listen}`,
      notRunningHint: daemon.hint,
    });
  }
  io.stderr.write(`kata-sysextctl: unknown verb "${verb}"\n\n${USAGE}`);
  return EXIT.usage;
}

/** Pulls --root and --config (`--root DIR` or `--root=DIR`) out of a daemon verb's arguments; the verb parses the rest. */
function takeLocation(args: string[]): { root?: string; config?: string; remaining: string[] } | { error: string } {
  const out: { root?: string; config?: string; remaining: string[] } = { remaining: [] };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    const eq = arg.indexOf("=");
    const flag = eq < 0 ? arg : arg.slice(0, eq);
    if (flag !== "--root" && flag !== "--config") {
      out.remaining.push(arg);
      continue;
    }
    const value = eq < 0 ? args[++i] : arg.slice(eq + 1);
    if (value === undefined || value === "" || (eq < 0 && value.startsWith("-"))) {
      return { error: `${flag} needs a value: ${flag === "--root" ? "--root DIR" : "--config FILE"}` };
    }
    if (flag === "--root") out.root = value;
    else out.config = value;
  }
  return out;
}

export interface DaemonLocation {
  root: string;
  /** What to check when it cannot be reached, for where it runs. */
  hint: string;
  /** Said on stderr when the root was not asked for: the CLI chose the demo's daemon by itself. */
  note: string | null;
}

/**
 * Which daemon the verbs talk to: --root, else $KATA_SYSEXTD_ROOT, else the host's; a checkout's demo
 * (`npm start`) when the host runs no daemon and the demo does, so its user needs no flags.
 */
export function locateDaemon(
  flag: string | undefined,
  env: string | undefined,
  exists: (path: string) => boolean,
  demoRoot: string = DEMO_ROOT,
): DaemonLocation {
  const withRoot = (root: string, note: string | null = null): DaemonLocation => ({
    root,
    hint: `is a kata-sysextd with --root ${root} running? (\`npm start\` runs the demo's)`,
    note,
  });
  if (flag !== undefined) return withRoot(flag);
  if (env !== undefined && env !== "") return withRoot(env);
  const host = hostPaths("/");
  if (!exists(host.apiSocket) && exists(hostPaths(demoRoot).apiSocket)) {
    return withRoot(demoRoot, `no ${host.apiSocket}; using the demo's daemon under ${demoRoot}`);
  }
  // Under systemd the unit says what is wrong; elsewhere (a container, a development machine) nothing started it.
  const hint = exists("/run/systemd/system")
    ? "is kata-sysextd running? systemctl status kata-sysextd"
    : "is kata-sysextd running? this system has no systemd to start it: run kata-sysextd, or `npm start` for the demo";
  return { root: "/", hint, note: null };
}
