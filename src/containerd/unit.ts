// Which configuration file containerd.service makes containerd read, decided from what systemd reports about the
// unit (its effective ExecStart and Environment after every drop-in), and the drop-in that points containerd at
// our merged file without taking the operator's choices away. Pure: systemd and /proc are read elsewhere.
import { basename } from "node:path";

/** containerd's own default when it is started without --config. */
export const CONTAINERD_DEFAULT_CONFIG = "/etc/containerd/config.toml";

/** containerd.service as systemd has it loaded. */
export interface UnitView {
  /** The ExecStart command: its program and argv exactly as systemd stores them (variables not yet expanded). */
  execStart: { path: string; argv: string[]; ignoreFailure: boolean } | null;
  /** Environment= assignments after every drop-in, "NAME=value". */
  environment: string[];
  fragmentPath: string;
  dropInPaths: string[];
}

/** Where containerd's configuration comes from, and how our drop-in must redirect it. */
export interface BaseChoice {
  /** The file containerd reads without us: the base we merge the Kata runtimes into. */
  base: string;
  /** Why it is that file, for the journal and /status. */
  why: string;
  /** The [Service] lines of our drop-in. */
  service: string[];
}

/** The config argument of a containerd command line: its index in argv and its word, or null (the default). */
export function configArgument(argv: readonly string[]): { index: number; word: string; inline: boolean } | null {
  let found: { index: number; word: string; inline: boolean } | null = null;
  // urfave/cli takes the flag with one or two dashes, separate or with "="; the last one wins.
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--") break;
    const m = /^--?(config|c)(=(.*))?$/s.exec(arg);
    if (m === null) continue;
    if (m[2] !== undefined) found = { index: i, word: m[3] ?? "", inline: true };
    else if (i + 1 < argv.length) {
      found = { index: i + 1, word: argv[i + 1] ?? "", inline: false };
      i++;
    }
  }
  return found;
}

/** The configuration file a running containerd's command line (/proc/PID/cmdline) makes it read. */
export function configOfCommandLine(argv: readonly string[]): string {
  const arg = configArgument(argv);
  return arg === null ? CONTAINERD_DEFAULT_CONFIG : arg.word;
}

const environ = (env: readonly string[]): Map<string, string> =>
  new Map(env.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));

/** systemd's expansion of $NAME and ${NAME} in an ExecStart word (unset names expand to nothing; $$ is $). */
export function expandWord(word: string, env: readonly string[]): string {
  const vars = environ(env);
  return word.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, braced, bare) =>
    all === "$$" ? "$" : (vars.get(braced ?? bare) ?? ""),
  );
}

/** The single variable a word consists of (`${CONTAINERD_CONFIG}` or `$CONTAINERD_CONFIG`), else null. */
function soleVariable(word: string): string | null {
  return /^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))$/.exec(word)?.slice(1).find(Boolean) ?? null;
}

/** An argv word as an ExecStart= line needs it: % doubled (specifiers were resolved), quoted when not plain. */
function quoteWord(word: string): string {
  const escaped = word.replaceAll("%", "%%");
  return /^[A-Za-z0-9_@%+=:,./${}-]+$/.test(escaped)
    ? escaped
    : `"${escaped.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

function execLine(path: string, argv: readonly string[], ignoreFailure: boolean): string {
  // "@" when the program is not argv[0]; "-" for ExecStart=-… (failure ignored).
  const head = path === argv[0] ? [] : [`@${quoteWord(path)}`];
  return `ExecStart=${ignoreFailure ? "-" : ""}${[...head, ...argv.map(quoteWord)].join(" ")}`;
}

/**
 * Decides the base from the unit as it is without our drop-in, and the drop-in lines that make containerd read
 * `ours` instead: only the variable the operator's ExecStart takes its --config from, when it does; otherwise
 * their own ExecStart with the config argument replaced or added. Returns a sentence when the unit gives no
 * configuration to build on.
 */
export function chooseBase(view: UnitView, ours: string): BaseChoice | string {
  const exec = view.execStart;
  if (exec === null) return `containerd.service has no ExecStart (${view.fragmentPath || "no unit file"})`;
  const where = [view.fragmentPath, ...view.dropInPaths].filter(Boolean).map((p) => basename(p));
  const shown = `ExecStart=${exec.argv.join(" ")}`;
  const arg = configArgument(exec.argv);
  if (arg === null) {
    const argv = [...exec.argv, "--config", ours];
    return {
      base: CONTAINERD_DEFAULT_CONFIG,
      why: `containerd.service's ${shown} (from ${where.join(", ")}) has no --config, so containerd reads its default ${CONTAINERD_DEFAULT_CONFIG}`,
      service: ["ExecStart=", execLine(exec.path, argv, exec.ignoreFailure)],
    };
  }
  const base = expandWord(arg.word, view.environment);
  if (base === "") {
    return `containerd.service's ${shown} passes an empty --config ("${arg.word}" is unset in its Environment=)`;
  }
  const variable = arg.inline ? null : soleVariable(arg.word);
  if (variable !== null) {
    return {
      base,
      why: `containerd.service's ${shown} reads $${variable}, which its Environment= sets to ${base} (from ${where.join(", ")})`,
      service: [`Environment=${quoteWord(`${variable}=${ours}`)}`],
    };
  }
  const argv = exec.argv.map((w, i) => (i !== arg.index ? w : arg.inline ? `--config=${ours}` : ours));
  return {
    base,
    why: `containerd.service's ${shown} (from ${where.join(", ")}) names ${base}`,
    service: ["ExecStart=", execLine(exec.path, argv, exec.ignoreFailure)],
  };
}

const HEADER = "# Generated by kata-sysextd: containerd reads the configuration with the Kata runtimes merged in.";

/** Our drop-in; the comments record the base, why, and the unit files it was decided from. */
export function renderUnitDropIn(choice: BaseChoice, unitFiles: string): string {
  return `${HEADER}\n# Base: ${choice.base}\n# Why: ${choice.why}\n# Unit files: ${unitFiles}\n[Service]\n${choice.service.join("\n")}\n`;
}

/** The choice recorded in a drop-in we wrote, with the unit files' fingerprint it was made from; else null. */
export function recordedChoice(text: string): { choice: BaseChoice; unitFiles: string } | null {
  if (!text.startsWith(HEADER)) return null;
  const field = (name: string) => new RegExp(`^# ${name}: (.*)$`, "m").exec(text)?.[1];
  const base = field("Base");
  const why = field("Why");
  const unitFiles = field("Unit files");
  const service = text.split("\n[Service]\n")[1];
  if (base === undefined || why === undefined || unitFiles === undefined || service === undefined) return null;
  return { choice: { base, why, service: service.split("\n").filter((l) => l !== "") }, unitFiles };
}
