// kata-sysextctl status | refresh | rollback | versions: the daemon's API client verbs. Mutations go over the
// root-only unix socket; status falls back to loopback TCP so non-root users can read it.
import { parseArgs } from "node:util";
import { type CheckOptions, matches, mismatch } from "../api/check.ts";
import { ApiConnectError, type ApiResponse, type Endpoint, request, streamLines } from "../api/client.ts";
import type { FromSchema } from "../api/schema-type.ts";
import {
  type ActionResult,
  actionResultSchema,
  canaryStatusSchema,
  downloadProgressSchema,
  type ErrorBody,
  errorBodySchema,
  type JsonSchema,
  statusDocumentSchema,
  versionsSchema,
} from "../api/schemas.ts";
import type { CanaryStatus, DownloadProgress, SkippedRelease, StatusDocument } from "../status.ts";
import { type CommandIo, EXIT } from "./io.ts";

export type CtlVerb = "status" | "refresh" | "rollback" | "versions" | "canary";

export interface CtlOptions {
  socketPath: string;
  /** Where status is read when the socket is not accessible (default http://127.0.0.1:8720). */
  tcpUrl?: string;
  /** The longest silence tolerated from the daemon (defaults: status 10 s, refresh stream 60 s, rollback 5 min). */
  timeoutMs?: number;
  /** What to check when the daemon cannot be reached, for where it runs (default: the systemd unit). */
  notRunningHint?: string;
}

const USAGE: Record<CtlVerb, string> = {
  status: "kata-sysextctl status [--json]      the daemon's status, human or JSON",
  refresh:
    "kata-sysextctl refresh [--json] [--release-holds]\n" +
    "                                     reconcile now, with progress; exit 0 ok, 1 failed\n" +
    "                                     --release-holds: first lift the holds of earlier rollbacks, so the\n" +
    "                                     images rolled back from may be taken again",
  rollback: "kata-sysextctl rollback [--json]    go back to the previous image; exit 0 ok, 1 failed",
  versions: "kata-sysextctl versions [--json]    local and remote versions",
  canary:
    "kata-sysextctl canary [--json]      start the canary container with the active image now, with progress;\n" +
    "                                     exit 0 passed, 1 failed",
};

const NOT_RUNNING = "is kata-sysextd running? systemctl status kata-sysextd";

/** Steps of a pass; the resting states (idle, degraded, error) say how the last pass ended, not this one. */
const PASS_STEPS = new Set(["resolving", "fetching", "verifying", "activating"]);

export async function ctlCommand(verb: CtlVerb, argv: string[], io: CommandIo, opts: CtlOptions): Promise<number> {
  let json: boolean;
  let releaseHolds: boolean;
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        json: { type: "boolean", default: false },
        "release-holds": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    });
    if (values.help) {
      io.stdout.write(`Usage: ${USAGE[verb]}\n`);
      return EXIT.ok;
    }
    json = values.json;
    releaseHolds = values["release-holds"];
    if (releaseHolds && verb !== "refresh") throw new Error("--release-holds belongs to refresh");
  } catch (err) {
    io.stderr.write(`kata-sysextctl ${verb}: ${(err as Error).message}\nUsage: ${USAGE[verb]}\n`);
    return EXIT.usage;
  }
  const socket: Endpoint = { socketPath: opts.socketPath };
  try {
    switch (verb) {
      case "status":
        return await status(io, opts, json);
      case "refresh":
        return await refresh(io, socket, opts, json, releaseHolds);
      case "rollback":
        return await action(
          io,
          await request(socket, "POST", "/v1/rollback", { timeoutMs: opts.timeoutMs ?? 300_000 }),
          json,
        );
      case "canary":
        return await canary(io, socket, opts, json);
      case "versions":
        return await versions(
          io,
          await request(socket, "GET", "/v1/versions", { timeoutMs: opts.timeoutMs ?? 60_000 }),
          json,
        );
    }
  } catch (err) {
    if (err instanceof ApiConnectError) {
      io.stderr.write(`kata-sysextctl: ${unreachable(err, opts.socketPath, opts.notRunningHint ?? NOT_RUNNING)}\n`);
    } else {
      // Anything else is our own bug or a daemon we do not understand: one clear line, not a stack trace.
      io.stderr.write(`kata-sysextctl ${verb}: ${err instanceof Error ? err.message : String(err)}\n`);
    }
    return EXIT.failed;
  }
}

function unreachable(err: ApiConnectError, where: string, hint: string): string {
  if (err.errno === "EACCES" || err.errno === "EPERM") {
    return `permission denied on ${where}: this command needs root (sudo kata-sysextctl …)`;
  }
  const why =
    err.errno === "ENOENT"
      ? "no socket"
      : err.errno === "ECONNREFUSED"
        ? "connection refused"
        : err.errno === "ETIMEDOUT"
          ? "no answer"
          : err.message;
  return `cannot reach kata-sysextd at ${where} (${why}); ${hint}`;
}

async function status(io: CommandIo, opts: CtlOptions, json: boolean): Promise<number> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const tcpUrl = opts.tcpUrl ?? "http://127.0.0.1:8720";
  let res: ApiResponse;
  try {
    res = await request({ socketPath: opts.socketPath }, "GET", "/status", { timeoutMs });
  } catch (socketErr) {
    if (!(socketErr instanceof ApiConnectError)) throw socketErr;
    try {
      res = await request({ url: tcpUrl }, "GET", "/status", { timeoutMs });
    } catch (tcpErr) {
      if (!(tcpErr instanceof ApiConnectError)) throw tcpErr;
      io.stderr.write(
        `kata-sysextctl: cannot reach kata-sysextd at ${opts.socketPath} (${socketErr.errno}) nor at ${tcpUrl} (${tcpErr.errno}); ${opts.notRunningHint ?? NOT_RUNNING}\n`,
      );
      return EXIT.failed;
    }
  }
  const doc = parseAnswer(io, res, statusDocumentSchema, STATUS_ADDED_LATER);
  if (doc === null) return EXIT.failed;
  io.stdout.write(json ? `${res.body}\n` : formatStatus(doc));
  return EXIT.ok;
}

async function refresh(
  io: CommandIo,
  socket: Endpoint,
  opts: CtlOptions,
  json: boolean,
  releaseHolds: boolean,
): Promise<number> {
  const view = new ProgressView(io, json);
  const seen: { outcome: ActionResult | null; failure: ErrorBody | null; answer: ApiResponse | null } = {
    outcome: null,
    failure: null,
    answer: null,
  };
  let streaming = false; // the daemon took the request: from here a lost connection does not mean it is down
  const streamed = streamLines(
    socket,
    "POST",
    `/v1/refresh?stream=1${releaseHolds ? "&releaseHolds=1" : ""}`,
    {
      onLine: (raw) => {
        streaming = true;
        if (!isObject(raw)) return;
        if (raw.type === "progress" && typeof raw.state === "string") {
          view.update(raw.state, matches(downloadProgressSchema, raw.download) ? raw.download : null);
        } else if (raw.type === "result") {
          if (matches(actionResultSchema, raw.result)) seen.outcome = raw.result;
          else seen.failure = unexpected(mismatch(actionResultSchema, raw.result, { at: "result" }) ?? "");
        } else if (raw.type === "error" && isErrorBody(raw.error)) {
          seen.failure = raw.error;
        }
      },
      onBody: (statusCode, body) => {
        seen.answer = { status: statusCode, contentType: "application/json", body };
      },
    },
    { timeoutMs: opts.timeoutMs ?? 60_000 },
  );
  try {
    await streamed;
  } catch (err) {
    view.finish(); // the progress bar's line ends before any message
    if (!(err instanceof ApiConnectError) || !streaming) throw err;
    io.stderr.write(
      `kata-sysextctl: the connection to kata-sysextd was lost during the refresh (${err.message}); it may still be running: kata-sysextctl status\n`,
    );
    return EXIT.failed;
  }
  view.finish();
  if (seen.answer !== null) return action(io, seen.answer, json);
  if (seen.outcome !== null) return printOutcome(io, seen.outcome, json);
  const err: ErrorBody = seen.failure ?? {
    code: "internal",
    message: "the refresh stream ended without an outcome",
    remedy: "journalctl -u kata-sysextd",
  };
  io.stderr.write(`refresh failed: ${err.message}\n${err.remedy ? `  remedy: ${err.remedy}\n` : ""}`);
  return EXIT.failed;
}

const PHASES: Record<string, string> = {
  import: "importing the canary image into containerd",
  start: "starting the canary container",
  cleanup: "removing what the canary left",
};

/** Streams the canary's phases to stderr as they start; its result to stdout (JSON with --json). */
async function canary(io: CommandIo, socket: Endpoint, opts: CtlOptions, json: boolean): Promise<number> {
  const seen: { result: CanaryStatus | null; failure: ErrorBody | null; answer: ApiResponse | null } = {
    result: null,
    failure: null,
    answer: null,
  };
  await streamLines(
    socket,
    "POST",
    "/v1/canary",
    {
      onLine: (raw) => {
        if (!isObject(raw)) return;
        if (raw.type === "progress" && typeof raw.phase === "string") {
          io.stderr.write(`canary: ${PHASES[raw.phase] ?? raw.phase}…\n`);
        } else if (raw.type === "result") {
          if (matches(canaryStatusSchema, raw.result)) seen.result = raw.result;
          else seen.failure = unexpected(mismatch(canaryStatusSchema, raw.result, { at: "result" }) ?? "");
        } else if (raw.type === "error" && isErrorBody(raw.error)) seen.failure = raw.error;
      },
      onBody: (statusCode, body) => {
        seen.answer = { status: statusCode, contentType: "application/json", body };
      },
    },
    // The canary's own timeout is at most an hour; the daemon may first finish a pass in flight.
    { timeoutMs: opts.timeoutMs ?? 3_900_000 },
  );
  if (seen.answer !== null) return failAnswer(io, seen.answer);
  const result = seen.result;
  if (result === null) {
    const err = seen.failure ?? { code: "internal", message: "the canary stream ended without a result", remedy: null };
    io.stderr.write(`canary failed: ${err.message}\n${err.remedy ? `  remedy: ${err.remedy}\n` : ""}`);
    return EXIT.failed;
  }
  if (json) io.stdout.write(`${JSON.stringify(result)}\n`);
  else if (result.outcome === "passed") {
    io.stdout.write(
      `canary passed with ${result.handler} in ${result.durationMs} ms (${result.image ?? "no image"})\n`,
    );
  } else {
    io.stdout.write(`canary failed with ${result.handler} at ${result.step}: ${result.reason}\n`);
  }
  return result.outcome === "passed" ? EXIT.ok : EXIT.failed;
}

async function action(io: CommandIo, res: ApiResponse, json: boolean): Promise<number> {
  const result = parseAnswer(io, res, actionResultSchema);
  if (result === null) return EXIT.failed;
  return printOutcome(io, result, json);
}

function printOutcome(io: CommandIo, result: ActionResult, json: boolean): number {
  if (json) io.stdout.write(`${JSON.stringify(result)}\n`);
  else if (result.ok) io.stdout.write(`${result.result}: ${result.message}\n`);
  else io.stderr.write(`failed: ${result.message}\n${result.remedy ? `  remedy: ${result.remedy}\n` : ""}`);
  return result.ok ? EXIT.ok : EXIT.failed;
}

async function versions(io: CommandIo, res: ApiResponse, json: boolean): Promise<number> {
  const list = parseAnswer(io, res, versionsSchema, VERSIONS_ADDED_LATER);
  if (list === null) return EXIT.failed;
  if (json) {
    io.stdout.write(`${res.body}\n`);
  } else {
    const lines = [`${list.name} (${list.arch})`, "local:"];
    if (list.local.length === 0) lines.push("  (none)");
    for (const v of list.local) {
      lines.push(`  ${v.active ? "*" : " "} ${v.version.padEnd(12)} ${v.image}${v.held ? "  (held)" : ""}`);
    }
    lines.push(`remote${list.source ? ` (${list.source})` : ""}:`);
    if (list.remote.length === 0 && list.remoteError === null) lines.push("  (none)");
    for (const v of list.remote) {
      lines.push(`    ${v.version.padEnd(12)} ${v.compatible ? "compatible" : `not compatible: ${v.reason ?? "?"}`}`);
    }
    for (const s of list.skipped ?? []) lines.push(`  skipped ${describeSkipped(s)}`);
    io.stdout.write(`${lines.join("\n")}\n`);
  }
  if (list.remoteError !== null) {
    const e = list.remoteError;
    io.stderr.write(`remote versions unavailable: ${e.message}\n${e.remedy ? `  remedy: ${e.remedy}\n` : ""}`);
    return EXIT.failed;
  }
  return EXIT.ok;
}

function describeSkipped(s: SkippedRelease): string {
  const again = s.retryAt === null ? "not tried again" : `tried again after ${s.retryAt}`;
  return `${s.member} ${s.version}: ${s.reason} (${again})`;
}

// ---- answers from the daemon, checked before use ----

// Each answer is checked against the schema its route serves it with (src/api/schemas.ts): another program on the
// port, or a daemon of another version, is refused with the field that does not match. Fields the CLI does not
// know (a newer daemon's) pass; fields newer than some daemons may be absent, and are read as such below.

/** Absent from a daemon older than the field; formatStatus reads each with `?.` or `?? []`. */
const STATUS_ADDED_LATER: CheckOptions = {
  addedLater: [
    "reboot",
    "stateDamage",
    "configRejected",
    "waiting",
    "skipped",
    "canary",
    "containerd",
    "members[].held",
    "nextBoot.skipped",
  ],
};
const VERSIONS_ADDED_LATER: CheckOptions = { addedLater: ["skipped"] };
/** failAnswer prints the remedy only when there is one. */
const ERROR_ADDED_LATER: CheckOptions = { addedLater: ["remedy"] };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;

const isErrorBody = (v: unknown): v is ErrorBody => matches(errorBodySchema, v, ERROR_ADDED_LATER);

const SAME_VERSION = "is kata-sysextd the same version as kata-sysextctl? install both from one release";

const unexpected = (why: string): ErrorBody => ({
  code: "unexpected-answer",
  message: `unexpected answer from kata-sysextd: ${why}`,
  remedy: SAME_VERSION,
});

/** The 200 answer as its schema types it; else reports why not (the daemon's error, or the field) and gives null. */
function parseAnswer<const S extends JsonSchema>(
  io: CommandIo,
  res: ApiResponse,
  schema: S,
  options: CheckOptions = {},
): FromSchema<S> | null {
  if (res.status === 200) {
    let value: unknown;
    try {
      value = JSON.parse(res.body);
    } catch {
      failAnswer(io, res);
      return null;
    }
    if (matches(schema, value, options)) return value;
    const why = mismatch(schema, value, options);
    io.stderr.write(`kata-sysextctl: unexpected answer from kata-sysextd: ${why}; ${SAME_VERSION}\n`);
    return null;
  }
  failAnswer(io, res);
  return null;
}

function failAnswer(io: CommandIo, res: ApiResponse): number {
  let err: ErrorBody | null = null;
  try {
    const value: unknown = JSON.parse(res.body);
    if (isErrorBody(value)) err = value;
  } catch {
    // not JSON: reported below as an unexpected answer
  }
  if (err !== null) {
    io.stderr.write(`kata-sysextctl: ${err.message} (${err.code})\n${err.remedy ? `  remedy: ${err.remedy}\n` : ""}`);
  } else {
    io.stderr.write(
      `kata-sysextctl: unexpected answer from kata-sysextd (HTTP ${res.status}): ${res.body.slice(0, 200)}\n`,
    );
  }
  return EXIT.failed;
}

// ---- human output ----

const MiB = 1024 * 1024;
const size = (bytes: number): string =>
  bytes >= MiB ? `${(bytes / MiB).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;

function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** "12.0 MiB of 30.0 MiB (40%), 3.0 MiB/s, ETA 6s" */
export function describeDownload(d: DownloadProgress): string {
  const rate = d.bytesPerSecond > 0 ? `, ${size(d.bytesPerSecond)}/s` : "";
  if (d.total === null || d.total <= 0) return `${size(d.bytes)}${rate}`;
  const pct = Math.min(100, Math.floor((d.bytes / d.total) * 100));
  const eta = d.bytesPerSecond > 0 ? `, ETA ${duration((d.total - d.bytes) / d.bytesPerSecond)}` : "";
  return `${size(d.bytes)} of ${size(d.total)} (${pct}%)${rate}${eta}`;
}

export function formatStatus(doc: StatusDocument): string {
  const ext = doc.extension;
  const lines: string[] = [];
  if (ext.active === null) lines.push(`${ext.name}: no image active`);
  else {
    const trust = ext.trust ? ` (verified by ${ext.trust})` : "";
    const merge = ext.merged ? "merged" : `NOT merged${ext.limitation ? ` (${ext.limitation})` : ""}`;
    lines.push(`${ext.name} ${ext.active}: active, ${merge}${trust}`);
  }
  const row = (label: string, value: string): void => {
    lines.push(`  ${label.padEnd(10)} ${value}`);
  };
  if (ext.image !== null) row("image", ext.image);
  // Kata is the extension above; its companions are the members after it.
  for (const m of doc.members.slice(1)) {
    const merge = m.merged ? "merged" : `NOT merged${ext.limitation ? ` (${ext.limitation})` : ""}`;
    row("companion", m.active === null ? `${m.name}: no image active` : `${m.name} ${m.active}: active, ${merge}`);
  }
  const host = doc.host;
  row(
    "host",
    `${host.id ?? "unknown OS"} ${host.versionId ?? "?"}, ${host.arch}, sysext level ${host.sysextLevel ?? "-"}`,
  );
  const next = doc.nextBoot;
  if (next === null) row("next boot", "no OS update pending");
  else if (next.staged) {
    // Staged with the companions' images for that release, when there are companions.
    const companions = doc.members
      .slice(1)
      .flatMap((m) => (m.nextBoot === null ? [] : [`, ${m.name} ${m.nextBoot}`]))
      .join("");
    row("next boot", `flatcar ${next.flatcarVersion}: kata ${next.kata ?? "?"}${companions} staged`);
  } else row("next boot", `flatcar ${next.flatcarVersion}: nothing staged${next.reason ? ` (${next.reason})` : ""}`);
  // Absent from a daemon older than the field.
  for (const s of next?.skipped ?? [])
    lines.push(`    skipped for flatcar ${next?.flatcarVersion}: ${describeSkipped(s)}`);
  // Absent from a daemon older than the field.
  const reboot = doc.reboot;
  if (reboot?.requested) {
    const carrier =
      reboot.sentinel === null
        ? "no sentinel configured"
        : `${reboot.sentinel.path}${reboot.sentinel.owner === "other" ? ", written by another package" : ""}`;
    row("reboot", `REQUESTED since ${reboot.since ?? "?"} (${carrier}): ${reboot.reason ?? ""}`);
  }
  // Absent from a daemon older than the field.
  const waiting = doc.waiting;
  if (waiting) {
    const what = waiting.members.map((m) => `${m.name} ${m.version}`).join(", ") || "the re-merge";
    const n = waiting.sandboxes;
    const until = waiting.rebootAt === null ? "" : `; a reboot is asked for at ${waiting.rebootAt} if they still run`;
    row("waiting", `${what}, for ${n} Kata sandbox${n === 1 ? "" : "es"} to end, since ${waiting.since}${until}`);
  }
  const pf = doc.preflight;
  if (pf === null) row("preflight", "not run yet");
  else {
    const warnings = pf.warnings > 0 ? `, ${pf.warnings} warning${pf.warnings === 1 ? "" : "s"}` : "";
    row("preflight", pf.failed === 0 ? `ok${warnings}` : `FAILED: ${pf.failed} check(s)${warnings}`);
    for (const check of pf.checks.filter((c) => c.status === "fail")) {
      lines.push(`    ${check.id}: ${check.detail}${check.remedy ? ` (remedy: ${check.remedy})` : ""}`);
    }
    for (const hypervisor of pf.hypervisors) lines.push(`    ${hypervisor.verdict}`);
  }
  // Absent from a daemon older than the field.
  if (doc.containerd) {
    row("containerd", `runtimes merged into ${doc.containerd.base ?? "?"}`);
    for (const h of doc.containerd.handlers) {
      lines.push(
        `    ${h.name}: ${h.registered ? "registered" : `not registered: ${h.reason ?? "?"}`}${h.pinned ? " (pinned)" : ""}`,
      );
    }
  }
  if (doc.canary?.handler === null) row("canary", "off");
  for (const c of doc.canary?.results ?? []) {
    const how = c.outcome === "passed" ? "passed" : `FAILED at ${c.step}: ${c.reason}`;
    row("canary", `${c.handler} ${how} (${c.image ?? "no image"}, ${c.durationMs} ms, ${c.at})`);
  }
  if (doc.download !== null) row("download", `${doc.download.file}: ${describeDownload(doc.download)}`);
  for (const s of doc.skipped ?? []) row("skipped", describeSkipped(s));
  // `?? []`: a daemon from before holds were shown sends members without them.
  for (const m of doc.members.filter((member) => (member.held ?? []).length > 0)) {
    row("held", `${m.name} ${m.held.join(", ")}: rolled back from, skipped until refresh --release-holds`);
  }
  const last = doc.lastReconcile;
  row("state", `${doc.state}${last ? `; last reconcile ${last.result} at ${last.at}` : "; no reconcile yet"}`);
  if (last?.error) {
    // A deferred pass's "error" says what waits.
    row(last.result === "deferred" ? "deferred" : "last error", last.error);
    if (last.remedy) row("remedy", last.remedy);
  }
  // Absent from a daemon older than the field.
  if (doc.stateDamage) row("state file", `LOST, moved aside to ${doc.stateDamage.movedTo}: ${doc.stateDamage.remedy}`);
  // Absent from a daemon older than the field.
  const rejected = doc.configRejected;
  if (rejected) {
    row("config", `REJECTED at ${rejected.at}, the previous one runs: ${rejected.message} (${rejected.code})`);
    if (rejected.remedy) row("remedy", rejected.remedy);
  }
  return `${lines.join("\n")}\n`;
}

/**
 * Refresh progress: a redrawn bar with bytes, rate and ETA on a terminal; on a pipe, one line per state
 * change and per tenth of the download, so logs stay short.
 */
class ProgressView {
  private lastState = "";
  private lastStep = -1;
  private drawn = false;
  private readonly io: CommandIo;
  private readonly quiet: boolean;
  constructor(io: CommandIo, quiet: boolean) {
    this.io = io;
    this.quiet = quiet;
  }

  update(state: string, download: DownloadProgress | null): void {
    // Before the pass takes over, the daemon still shows how the previous one ended: not this refresh's progress.
    if (this.quiet || !PASS_STEPS.has(state)) return;
    if (this.io.isTTY) {
      const text = download === null ? `${state}…` : `${state} ${bar(download)} ${describeDownload(download)}`;
      this.io.stdout.write(`\r\x1b[2K${text}`);
      this.drawn = true;
      return;
    }
    if (state !== this.lastState) {
      this.lastState = state;
      this.lastStep = -1;
      this.io.stdout.write(`${state}${download ? ` ${download.file}` : ""}\n`);
    }
    if (download !== null) {
      const step =
        download.total !== null && download.total > 0
          ? Math.floor((download.bytes / download.total) * 10)
          : Math.floor(download.bytes / (16 * MiB));
      if (step !== this.lastStep) {
        this.lastStep = step;
        this.io.stdout.write(`  ${download.file}: ${describeDownload(download)}\n`);
      }
    }
  }

  finish(): void {
    if (this.drawn) this.io.stdout.write("\r\x1b[2K");
  }
}

function bar(d: DownloadProgress, width = 24): string {
  if (d.total === null || d.total <= 0) return `[${"?".repeat(width)}]`;
  const filled = Math.min(width, Math.round((d.bytes / d.total) * width));
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
}
