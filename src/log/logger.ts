// The one logger. Records go to journald with structured fields when the journal socket exists (a real
// host, or the nspawn container), and to stderr as readable lines otherwise (a terminal, tests, the demo).
import { existsSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import { redactCredentials } from "../redact.ts";

export type Level = "debug" | "info" | "notice" | "warning" | "error";

/** Journal field names are upper case by journald convention: KATA_SYSEXT_NAME, FLATCAR_VERSION_ID, … */
export type Fields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  log(level: Level, message: string, fields?: Fields): void;
  debug(message: string, fields?: Fields): void;
  info(message: string, fields?: Fields): void;
  notice(message: string, fields?: Fields): void;
  warning(message: string, fields?: Fields): void;
  error(message: string, fields?: Fields): void;
  /** A logger whose records all carry these fields too. */
  with(fields: Fields): Logger;
}

export type Sink = (level: Level, message: string, fields: Fields) => void;

const PRIORITY: Record<Level, number> = { error: 3, warning: 4, notice: 5, info: 6, debug: 7 };
const ORDER: Record<Level, number> = { debug: 0, info: 1, notice: 2, warning: 3, error: 4 };

export function createLogger(sink: Sink, minLevel: Level = "info", base: Fields = {}): Logger {
  const log = (level: Level, message: string, fields: Fields = {}): void => {
    if (ORDER[level] < ORDER[minLevel]) return;
    const all: Fields = {};
    for (const [k, v] of Object.entries({ ...base, ...fields }))
      all[k] = typeof v === "string" ? redactCredentials(v) : v;
    sink(level, redactCredentials(message), all);
  };
  return {
    log,
    debug: (m, f) => log("debug", m, f),
    info: (m, f) => log("info", m, f),
    notice: (m, f) => log("notice", m, f),
    warning: (m, f) => log("warning", m, f),
    error: (m, f) => log("error", m, f),
    with: (fields) => createLogger(sink, minLevel, { ...base, ...fields }),
  };
}

/**
 * stderr lines: `warning: image verified [KATA_SYSEXT_VERSION=3.32.0]`. Without `stream`, each line is one
 * write(2) to fd 2 (writeStderr): process.stderr would first load Node's stream modules and open a handle over
 * the pipe or tty, some 4 ms of every command's start (the boot step's is on the boot's critical path).
 */
export function stderrSink(stream?: NodeJS.WritableStream): Sink {
  const write = stream === undefined ? writeStderr : (line: string) => void stream.write(line);
  return (level, message, fields) => {
    const shown = Object.entries(fields)
      .filter(([k, v]) => v !== undefined && v !== null && k !== "SYSLOG_IDENTIFIER")
      .map(([k, v]) => `${k}=${String(v)}`);
    write(`${level}: ${message}${shown.length > 0 ? ` [${shown.join(" ")}]` : ""}\n`);
  };
}

/** Set once a line had to go through process.stderr: the lines after it follow it there, in order. */
let throughStream = false;

/**
 * A line to fd 2, whole. A descriptor that is non-blocking and full (Node makes a pipe's so once anything uses
 * process.stderr) or that fails otherwise hands the rest to process.stderr, which queues it, or deals with a
 * closed stderr as it always does.
 */
function writeStderr(line: string): void {
  let rest = Buffer.from(line);
  while (!throughStream && rest.length > 0) {
    try {
      const written = writeSync(2, rest);
      if (written === 0) throughStream = true;
      rest = rest.subarray(written);
    } catch {
      throughStream = true;
    }
  }
  if (rest.length > 0) process.stderr.write(rest);
}

type JournalSend = (priority: number, message: string, fields: Record<string, string>) => void;

/** journald through the native systemd-journald addon (sd_journal_send), so fields stay structured. */
export function journalSink(identifier: string): Sink {
  const require = createRequire(import.meta.url);
  const send = require("systemd-journald/log.js") as JournalSend;
  return (level, message, fields) => {
    const journalFields: Record<string, string> = { SYSLOG_IDENTIFIER: identifier };
    for (const [k, v] of Object.entries(fields)) {
      if (v !== undefined && v !== null) journalFields[k.toUpperCase()] = String(v);
    }
    send(PRIORITY[level], message, journalFields);
  };
}

export const JOURNAL_SOCKET = "/run/systemd/journal/socket";

/** journald when it is there (and we are not forced to stderr), else stderr. */
export function defaultLogger(identifier: string, minLevel: Level = "info"): Logger {
  const wantStderr = process.env.KATA_SYSEXTD_LOG === "stderr";
  const sink = !wantStderr && existsSync(JOURNAL_SOCKET) ? journalSink(identifier) : stderrSink();
  return createLogger(sink, minLevel);
}

/** Fixed MESSAGE_IDs of the events that units/kata-sysextd.catalog explains (journalctl -x). */
export const MessageId = {
  imageActivated: "6b4c3e0f1f6a4a49a3a0d8b1c2e7f001",
  rolledBack: "6b4c3e0f1f6a4a49a3a0d8b1c2e7f002",
  incompatibleNextOs: "6b4c3e0f1f6a4a49a3a0d8b1c2e7f003",
  verificationFailed: "6b4c3e0f1f6a4a49a3a0d8b1c2e7f004",
  preflightFailed: "6b4c3e0f1f6a4a49a3a0d8b1c2e7f005",
  nextBootStaged: "6b4c3e0f1f6a4a49a3a0d8b1c2e7f006",
  stateRestored: "6b4c3e0f1f6a4a49a3a0d8b1c2e7f007",
  stateLost: "6b4c3e0f1f6a4a49a3a0d8b1c2e7f008",
  rebootRequested: "6b4c3e0f1f6a4a49a3a0d8b1c2e7f019",
  canaryFailed: "6b4c3e0f1f6a4a49a3a0d8b1c2e7f009",
} as const;
