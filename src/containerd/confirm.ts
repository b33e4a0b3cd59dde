// What containerd loaded, not what we wrote: after the restart, the running process's own command line must name
// our merged file, and containerd's `config dump` of that file (the binary the process runs) must show every
// handler we registered in the runtimes table of its schema.
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { parse } from "smol-toml";
import { KataError } from "../errors.ts";
import { run } from "../exec.ts";
import type { ServiceInfo } from "../systemd/manager.ts";
import { lookup, schemaOf, type Table } from "./schema.ts";
import { configOfCommandLine } from "./unit.ts";

/** The argv of a process, read from /proc/PID/cmdline (a path already resolved under --root). */
export async function commandLine(procCmdline: string): Promise<string[] | null> {
  const raw = await readFile(procCmdline, "utf8").catch(() => null);
  if (raw === null || raw === "") return null;
  return raw.replace(/\0$/, "").split("\0");
}

/** A configuration's CRI runtimes table (where its schema keeps it), or a sentence why it has none. */
export function runtimesIn(text: string): Table | string {
  let doc: Table;
  try {
    doc = parse(text) as Table;
  } catch (err) {
    return `not valid TOML: ${(err as Error).message.split("\n")[0]}`;
  }
  const schema = schemaOf(doc);
  if (typeof schema === "string") return schema;
  return lookup(doc, schema.runtimes) ?? {};
}

const failure = (message: string, remedy: string) => new KataError("containerd-failed", message, { remedy });

/**
 * Throws, saying exactly why, unless containerd.service's main process reads `configOnHost` and containerd's
 * own dump of it has every name in `handlers`.
 */
export async function confirmLoaded(
  info: ServiceInfo,
  configOnHost: string,
  unitDropInOnHost: string,
  handlers: readonly string[],
  host: (path: string) => string,
): Promise<void> {
  if (info.mainPid === 0) {
    throw failure("containerd.service has no main process after the restart", "systemctl status containerd");
  }
  const argv = await commandLine(host(`/proc/${info.mainPid}/cmdline`));
  if (argv === null) {
    throw failure(`cannot read the command line of containerd (pid ${info.mainPid})`, "systemctl status containerd");
  }
  const reads = configOfCommandLine(argv);
  if (reads !== configOnHost) {
    const ours = basename(unitDropInOnHost);
    const later = info.dropInPaths.filter((p) => p !== unitDropInOnHost && basename(p) > ours);
    const why =
      later.length > 0
        ? `${later.join(", ")} sort${later.length === 1 ? "s" : ""} after ${ours} and override${later.length === 1 ? "s" : ""} it`
        : `${ours} did not take effect`;
    throw failure(
      `containerd (pid ${info.mainPid}) runs "${argv.join(" ")}", which reads ${reads}, not ${configOnHost}: ${why}`,
      `see the effective unit with \`systemctl cat containerd\`; name our drop-in to sort last ([containerd] unit_drop_in, e.g. 99-kata-sysextd.conf) or remove the override`,
    );
  }
  // The binary its argv[0] names (else the unit's ExecStart program). Not /proc/PID/exe: exec'ing another
  // process's exe link needs ptrace access, which the sandboxed daemon does not have.
  const program = argv[0]?.startsWith("/") ? argv[0] : (info.execStart.at(-1)?.path ?? "containerd");
  const dump = await run(host(program), ["--config", host(reads), "config", "dump"], {
    timeoutMs: 30_000,
  });
  if (dump.exitCode !== 0) {
    throw failure(
      `containerd --config ${reads} config dump exited ${dump.exitCode}: ${dump.stderr.trim().split("\n").at(-1) ?? ""}`,
      `containerd cannot load ${reads}; check it with: containerd --config ${reads} config dump`,
    );
  }
  const loaded = runtimesIn(dump.stdout);
  const missing = typeof loaded === "string" ? [...handlers] : handlers.filter((h) => !(h in loaded));
  if (missing.length > 0) {
    throw failure(
      `containerd's config dump of ${reads} lacks the runtime${missing.length === 1 ? "" : "s"} ${missing.join(", ")}${typeof loaded === "string" ? ` (${loaded})` : ""}: this containerd does not read the file as it was written (a version 3 file needs containerd 2.x)`,
      `compare \`containerd --config ${reads} config dump\` with ${reads}`,
    );
  }
}
