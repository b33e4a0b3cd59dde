// kata-sysextd: argument parsing and dispatch only; the wiring lives in src/main, the daemon in src/daemon.
import { parseArgs } from "node:util";
import { loadConfig } from "../config/load.ts";
import { asKataError } from "../errors.ts";
import { defaultLogger } from "../log/logger.ts";
import { hostPaths } from "../paths.ts";
import { DAEMON_VERSION } from "../version.ts";
import { type CommandIo, EXIT, processIo, rootProblem } from "./io.ts";

const USAGE = `Usage:
  kata-sysextd [--config FILE] [--root DIR]         run the daemon: reconcile on start, on events and on a timer;
                                                    serve the status API
  kata-sysextd --once [--config FILE] [--root DIR]  one reconcile pass (resolve, fetch, verify, install, activate)
  kata-sysextd boot [--config FILE] [--root DIR]    boot path, no network: link a staged image compatible with the
                                                    booted OS, or remove a link to an incompatible one

Options:
  --config FILE  configuration (default: <root>/etc/kata-sysextd/config.toml; missing file = defaults)
  --root DIR     resolve every host path under DIR and pass --root=DIR to systemd-sysext
  --once         one pass, then exit: 0 active and verified, 1 failed, 2 usage or config error
  -h, --help     this text
  --version      print the version
`;

export async function main(argv: string[], io: CommandIo = processIo()): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    io.stderr.write(`kata-sysextd: ${(err as Error).message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (values.version) {
    io.stdout.write(`kata-sysextd ${DAEMON_VERSION}\n`);
    return EXIT.ok;
  }
  const verb = positionals[0];
  if (positionals.length > 1 || (verb !== undefined && verb !== "boot")) {
    io.stderr.write(`kata-sysextd: unknown argument "${positionals.join(" ")}"\n\n${USAGE}`);
    return EXIT.usage;
  }
  if (verb === "boot" && values.once) {
    io.stderr.write(`kata-sysextd: "boot" and --once exclude each other\n`);
    return EXIT.usage;
  }

  const badRoot = rootProblem(values.root);
  if (badRoot !== null) {
    io.stderr.write(`kata-sysextd: ${badRoot}\n`);
    return EXIT.usage;
  }
  const paths = hostPaths(values.root ?? "/");
  const configFile = values.config ?? paths.configFile;
  let loaded: Awaited<ReturnType<typeof loadConfig>>;
  try {
    loaded = await loadConfig(configFile, { required: values.config !== undefined, host: paths.host });
  } catch (err) {
    const e = asKataError(err);
    io.stderr.write(`kata-sysextd: ${e.message}${e.remedy ? `\n  ${e.remedy}` : ""}\n`);
    return EXIT.usage;
  }
  const { config } = loaded;
  const log = defaultLogger("kata-sysextd", config.daemon.logLevel);
  if (loaded.defaults)
    log.notice(`no configuration at ${configFile}: running on the defaults (source ${config.source.url})`);
  for (const note of loaded.notes) log.notice(note);
  // Imported late so --help and usage errors stay fast and do not load fastify, dbus-next and friends.
  if (verb === undefined && !values.once) {
    const { runDaemon } = await import("../daemon/run.ts");
    return runDaemon({ paths, config, configFile, configDefaults: loaded.defaults, log });
  }
  const { runCommand } = await import("../main/commands.ts");
  return runCommand(verb === "boot" ? "boot" : "once", { paths, config, configFile, log });
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: "string" },
      root: { type: "string" },
      once: { type: "boolean" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean" },
    },
  });
}
