// The daemon's persisted state (/var/lib/kata-sysextd/state.json), written atomically. The file system (the
// active link, the store) is the truth about images; this file only remembers what cannot be read off it:
// which image was active before, what the next boot should merge, how the last pass ended.
//
// Every write is a read-modify-write through updateState, one writer at a time: a pass writes it under the store
// lock while the daemon records a next boot or lifts holds outside any pass, and a `kata-sysextd --once` may run
// beside the daemon. Two overlapping updates would each write what they read, and one change would be lost.
import { mkdirSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { type Clock, systemClock } from "../clock.ts";
import { fail, KataError, ok, type Result } from "../errors.ts";
import { listing, readSmallFile } from "../files.ts";
import { type Logger, MessageId } from "../log/logger.ts";
import type { CandidateFailure, OtherReleaseImage, SkippedCandidate } from "../model.ts";
import { extensionNameProblem, fileNameProblem } from "../release/names.ts";
import { fsyncDir, isTempOf, writeFileAtomic } from "./fsutil.ts";
import { acquireLock } from "./lock.ts";

export interface NextBoot {
  flatcarVersion: string;
  /** The image staged for each member with that release, by member name; empty when nothing is staged. */
  files: Record<string, string>;
  staged: boolean;
  reason: string | null;
  /** The Flatcar version that was booted when this was staged, so a boot on the old release can be recognised. */
  stagedOn: string | null;
  /** Candidates for that release left out because they failed verification or inspection, by member. */
  skipped: Record<string, SkippedCandidate[]>;
}

export interface PersistedState {
  schema: 2;
  /**
   * Per member (Kata and each companion), the store file its link named before the last switch that moved it
   * (null: none); the rollback target. A member no switch has moved yet is absent.
   */
  previous: Record<string, string | null>;
  nextBoot: NextBoot | null;
  /**
   * Images a pass could not activate under running sandboxes, by member, for the boot step to activate:
   * policy.activation = "next-boot", or "wait" once it waited longer than policy.max_wait_seconds.
   */
  deferred: Record<string, string>;
  /** When passes started deferring an activation for running sandboxes (ISO-8601); null while none is deferred. */
  waitingSince: string | null;
  /** The reboot kata-sysextd asks the cluster for (controller/reboot.ts), or null. */
  reboot: RebootRequest | null;
  /**
   * Images the operator rolled back from, by member: passes skip them (a newer release is taken) until the
   * configuration changes, so a rollback sticks instead of being undone by the next timer pass.
   */
  held: Record<string, string[]>;
  /**
   * SHA-256 of what decides versions in the configuration the holds were made under (source, policy, companions).
   * A pass running with other such settings lifts them (the operator has decided anew), whether the daemon saw
   * the edit or not (`--once`, or an edit while stopped).
   */
  heldUnder: string | null;
  lastReconcile: {
    at: string;
    result: "ok" | "failed" | "deferred";
    error: string | null;
    remedy: string | null;
  } | null;
  /**
   * The link changes of a switch under way, written before the first link moves and cleared when it is done
   * or undone. Found at the start of a pass, it means the daemon died inside a switch (act.ts undoes it).
   */
  switching: LinkChangeRecord[] | null;
  /**
   * The members the last switch moved: a rollback moves those back and leaves the others. Null in a state file
   * written before it was kept (then a rollback considers every member).
   */
  lastSwitch: string[] | null;
  /**
   * Published candidates that failed verification or inspection, by member, keyed by the digest SHA256SUMS gave
   * them (controller/candidates.ts): skipped until their retry is due, so a bad newest release costs one download.
   */
  failedCandidates: Record<string, CandidateFailure[]>;
  /** What the last pass with the network left out and why, by member: /status and `versions` show it. */
  skipped: Record<string, SkippedCandidate[]>;
  /**
   * Published images fetched before and found to be made for another release of this OS, by member, keyed by
   * digest with their extension-release (controller/candidates.ts): pruned, they are not fetched again while
   * SHA256SUMS lists the same bytes, and each decision judges them again for the release it is for.
   */
  otherRelease: Record<string, OtherReleaseImage[]>;
}

export interface RebootRequest {
  reason: string;
  /** When it was first asked for (ISO-8601); a new reason keeps it. */
  since: string;
  /** The sentinel file that carries it and whose it is; null when [cluster] reboot_sentinel is off. */
  sentinel: { path: string; owner: "kata-sysextd" | "other" } | null;
}

export interface LinkChangeRecord {
  member: string;
  from: string | null;
  to: string;
}

export const EMPTY_STATE: PersistedState = {
  schema: 2,
  previous: {},
  nextBoot: null,
  deferred: {},
  waitingSince: null,
  reboot: null,
  held: {},
  heldUnder: null,
  lastReconcile: null,
  switching: null,
  lastSwitch: null,
  failedCandidates: {},
  skipped: {},
  otherRelease: {},
};

// The schema, checked on every read. Store file names and member names are checked as names, so no path that
// comes from this file can point outside the store (a switch record with from: "../../x" would otherwise move
// the live link there). Fields added after a schema was first written may be absent and read as empty. Schema 2
// keys every per-member field by member name, Kata (the primary) included; schema 1 kept Kata's rollback target
// and next-boot image apart from the companions' and is migrated when read (parseState). Writes are schema 2.

type Check<T> = (value: unknown, at: string) => T;

class StateInvalid extends Error {}

const problem = (at: string, expected: string, value: unknown): never => {
  const shown = JSON.stringify(value) ?? String(value);
  throw new StateInvalid(`${at} must be ${expected}, got ${shown.length > 80 ? `${shown.slice(0, 80)}…` : shown}`);
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

const text: Check<string> = (v, at) => (typeof v === "string" ? v : problem(at, "a string", v));
const flag: Check<boolean> = (v, at) => (typeof v === "boolean" ? v : problem(at, "true or false", v));
const instant: Check<string> = (v, at) =>
  typeof v === "string" && !Number.isNaN(Date.parse(v)) ? v : problem(at, "an ISO-8601 time", v);
const storeFile: Check<string> = (v, at) => {
  if (typeof v !== "string") return problem(at, "a store file name", v);
  const why = fileNameProblem(v);
  return why === null ? v : problem(at, `a store file name (this one ${why})`, v);
};
const memberName = (key: string, at: string): string => {
  const why = extensionNameProblem(key);
  return why === null ? key : problem(`${at} key`, `an extension name (this one ${why})`, key);
};
const orNull =
  <T>(check: Check<T>): Check<T | null> =>
  (v, at) =>
    v === null ? null : check(v, at);
const listOf =
  <T>(check: Check<T>): Check<T[]> =>
  (v, at) =>
    Array.isArray(v) ? v.map((item, i) => check(item, `${at}[${i}]`)) : problem(at, "a list", v);
/** A record by member name; built with fromEntries, so a key such as "__proto__" stays a plain key. */
const byMember =
  <T>(check: Check<T>): Check<Record<string, T>> =>
  (v, at) =>
    isObject(v)
      ? Object.fromEntries(Object.entries(v).map(([k, item]) => [memberName(k, at), check(item, `${at}.${k}`)]))
      : problem(at, "an object by member name", v);
/** A field of `obj`; an absent one reads as `empty` (written by an older version). */
const field = <T>(obj: Record<string, unknown>, key: string, check: Check<T>, empty: T, at = ""): T =>
  Object.hasOwn(obj, key) ? check(obj[key], `${at}${key}`) : empty;

/** A next boot's fields, which both schemas keep alike, around `files`, which each keeps its own way. */
function nextBootWith(v: Record<string, unknown>, at: string, files: () => Record<string, string>): NextBoot {
  return {
    flatcarVersion: text(v.flatcarVersion, `${at}.flatcarVersion`),
    files: files(),
    staged: flag(v.staged, `${at}.staged`),
    reason: orNull(text)(v.reason, `${at}.reason`),
    stagedOn: field(v, "stagedOn", orNull(text), null, `${at}.`),
    skipped: field(v, "skipped", byMember(listOf(skippedCandidate)), {}, `${at}.`),
  };
}

/** The next boot as schema 2 writes it: the staged images by member. */
const nextBoot: Check<NextBoot> = (v, at) => {
  if (!isObject(v)) return problem(at, "an object", v);
  return nextBootWith(v, at, () => field(v, "files", byMember(storeFile), {}, `${at}.`));
};

/**
 * The next boot as schema 1 wrote it: Kata's image in `file` (and its version in `kata`, which schema 2 reads off
 * the file name), the companions' in `companions`. Read into schema 2's `files`, Kata under `primary`.
 */
const nextBootV1 =
  (primary: () => string): Check<NextBoot> =>
  (v, at) => {
    if (!isObject(v)) return problem(at, "an object", v);
    orNull(text)(v.kata, `${at}.kata`);
    const file = orNull(storeFile)(v.file, `${at}.file`);
    const companions = field(v, "companions", byMember(storeFile), {}, `${at}.`);
    return nextBootWith(v, at, () =>
      Object.fromEntries([...Object.entries(companions), ...(file === null ? [] : [[primary(), file]])]),
    );
  };

const RESULTS = ["ok", "failed", "deferred"] as const;
const lastReconcile: Check<NonNullable<PersistedState["lastReconcile"]>> = (v, at) => {
  if (!isObject(v)) return problem(at, "an object", v);
  const result = v.result;
  if (!RESULTS.includes(result as (typeof RESULTS)[number])) problem(`${at}.result`, RESULTS.join(" or "), result);
  return {
    at: instant(v.at, `${at}.at`),
    result: result as (typeof RESULTS)[number],
    error: orNull(text)(v.error ?? null, `${at}.error`),
    remedy: orNull(text)(v.remedy ?? null, `${at}.remedy`),
  };
};

const linkChange: Check<LinkChangeRecord> = (v, at) => {
  if (!isObject(v)) return problem(at, "an object {member, from, to}", v);
  return {
    member: memberName(text(v.member, `${at}.member`), `${at}.member`),
    from: orNull(storeFile)(v.from, `${at}.from`),
    to: storeFile(v.to, `${at}.to`),
  };
};

const sha256: Check<string> = (v, at) =>
  typeof v === "string" && /^[0-9a-f]{64}$/.test(v) ? v : problem(at, "a SHA-256 in hex", v);
const count: Check<number> = (v, at) =>
  typeof v === "number" && Number.isInteger(v) && v >= 0 ? v : problem(at, "a count", v);

const skippedCandidate: Check<SkippedCandidate> = (v, at) => {
  if (!isObject(v)) return problem(at, "an object {file, version, reason, retryAt}", v);
  return {
    file: storeFile(v.file, `${at}.file`),
    version: text(v.version, `${at}.version`),
    reason: text(v.reason, `${at}.reason`),
    retryAt: orNull(instant)(v.retryAt, `${at}.retryAt`),
  };
};

const candidateFailure: Check<CandidateFailure> = (v, at) => {
  if (!isObject(v)) return problem(at, "an object {file, version, sha256, code, reason, …}", v);
  return {
    ...skippedCandidate(v, at),
    sha256: sha256(v.sha256, `${at}.sha256`),
    // Only compared, never acted on: any code a newer version wrote reads back as itself.
    code: text(v.code, `${at}.code`) as CandidateFailure["code"],
    attempts: count(v.attempts, `${at}.attempts`),
    firstAt: instant(v.firstAt, `${at}.firstAt`),
    lastAt: instant(v.lastAt, `${at}.lastAt`),
    ...(v.maxBytes === undefined ? {} : { maxBytes: count(v.maxBytes, `${at}.maxBytes`) }),
  };
};

/** An extension-release is a few lines; this bounds what one entry may add to state.json. */
const RELEASE_MAX_CHARS = 64 * 1024;
const otherReleaseImage: Check<OtherReleaseImage> = (v, at) => {
  if (!isObject(v)) return problem(at, "an object {file, version, sha256, extensionRelease}", v);
  const release = text(v.extensionRelease, `${at}.extensionRelease`);
  if (release.length > RELEASE_MAX_CHARS) problem(`${at}.extensionRelease`, "an extension-release", release);
  return {
    file: storeFile(v.file, `${at}.file`),
    version: text(v.version, `${at}.version`),
    sha256: sha256(v.sha256, `${at}.sha256`),
    extensionRelease: release,
  };
};

const OWNERS = ["kata-sysextd", "other"] as const;
const rebootRequest: Check<RebootRequest> = (v, at) => {
  if (!isObject(v)) return problem(at, "an object {reason, since, sentinel}", v);
  const sentinel = (w: unknown, where: string): NonNullable<RebootRequest["sentinel"]> => {
    if (!isObject(w)) return problem(where, "an object {path, owner}", w);
    const owner = w.owner;
    if (!OWNERS.includes(owner as (typeof OWNERS)[number])) problem(`${where}.owner`, OWNERS.join(" or "), owner);
    return { path: text(w.path, `${where}.path`), owner: owner as (typeof OWNERS)[number] };
  };
  return {
    reason: text(v.reason, `${at}.reason`),
    since: instant(v.since, `${at}.since`),
    sentinel: orNull(sentinel)(v.sentinel, `${at}.sentinel`),
  };
};

/** The schema this version writes; it reads this one and every older one, migrating them on read. */
export const STATE_SCHEMA = 2;

/**
 * state.json's text as a checked PersistedState (schema 2), or what is wrong with it (field path and what was
 * expected). A schema 1 file is migrated: its `previous` and next boot `file` were Kata's, which is `primary`
 * (the configured [source] name); its companions' were kept apart by name. A newer schema is refused: this
 * version cannot know what its fields mean.
 */
export function parseState(json: string, primary?: string): Result<PersistedState, string> {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    return fail(`is not JSON (${(err as Error).message})`);
  }
  try {
    if (!isObject(doc)) return problem("the file", "a JSON object", doc);
    if (typeof doc.schema === "number" && Number.isInteger(doc.schema) && doc.schema > STATE_SCHEMA) {
      throw new StateInvalid(
        `schema ${doc.schema} is newer than this kata-sysextd reads (1 to ${STATE_SCHEMA}): a newer kata-sysextd wrote it; run that version again to keep what it recorded`,
      );
    }
    if (doc.schema !== 1 && doc.schema !== STATE_SCHEMA) return problem("schema", `1 or ${STATE_SCHEMA}`, doc.schema);
    const common = {
      deferred: field(doc, "deferred", byMember(storeFile), {}),
      waitingSince: field(doc, "waitingSince", orNull(instant), null),
      reboot: field(doc, "reboot", orNull(rebootRequest), null),
      held: field(doc, "held", byMember(listOf(storeFile)), {}),
      heldUnder: field(doc, "heldUnder", orNull(text), null),
      lastReconcile: field(doc, "lastReconcile", orNull(lastReconcile), null),
      switching: field(doc, "switching", orNull(listOf(linkChange)), null),
      lastSwitch: field(doc, "lastSwitch", orNull(listOf((v, at) => memberName(text(v, at), at))), null),
      failedCandidates: field(doc, "failedCandidates", byMember(listOf(candidateFailure)), {}),
      skipped: field(doc, "skipped", byMember(listOf(skippedCandidate)), {}),
      otherRelease: field(doc, "otherRelease", byMember(listOf(otherReleaseImage)), {}),
    };
    if (doc.schema === STATE_SCHEMA) {
      const previous = field(doc, "previous", byMember(orNull(storeFile)), {});
      return ok({
        schema: STATE_SCHEMA,
        previous,
        nextBoot: field(doc, "nextBoot", orNull(nextBoot), null),
        ...common,
      });
    }
    // Schema 1. Asked for only when there is a Kata entry to key: the StateStore always knows the name
    // (src/main/compose.ts), so its absence is a programming error, not damage to the file.
    const kataName = (): string => {
      if (primary === undefined) throw new Error("a schema 1 state file is read only knowing the primary member");
      return primary;
    };
    const kata = field(doc, "previous", orNull(storeFile), null);
    const companions = field(doc, "previousCompanions", byMember(orNull(storeFile)), {});
    const next = field(doc, "nextBoot", orNull(nextBootV1(kataName)), null);
    const previous = Object.fromEntries([
      ...Object.entries(companions),
      ...(kata === null ? [] : [[kataName(), kata]]),
    ]);
    return ok({ schema: STATE_SCHEMA, previous, nextBoot: next, ...common });
  } catch (err) {
    if (err instanceof StateInvalid) return fail(`is not valid: ${err.message}`);
    throw err;
  }
}

/** state.json is a few KiB; anything near this is not ours. */
export const STATE_MAX_BYTES = 4 * 1024 * 1024;

export interface StateOptions {
  /**
   * The primary member's name (config.source.name): a schema 1 file kept Kata's rollback target and next-boot
   * image apart from the companions', and is migrated under this name. Reading such a file without it throws.
   */
  primary?: string;
  /** Where recoveries are reported (the journal); without it they are silent. */
  log?: Logger;
  clock?: Clock;
  /** How long recovering or updating waits for another process's update of the file. */
  lockWaitMs?: number;
}

/** The last good copy, written before each replace of the file. */
export const backupOf = (file: string): string => `${file}.bak`;
/** Where an unusable state file is moved: `state.json.corrupt-<time>` (its backup: `…-<time>.bak`). */
const CORRUPT_INFIX = ".corrupt-";

type Loaded = { kind: "ok"; state: PersistedState } | { kind: "missing" } | { kind: "bad"; problem: string };

async function load(path: string, primary: string | undefined): Promise<Loaded> {
  const read = await readSmallFile(path, STATE_MAX_BYTES);
  switch (read.kind) {
    case "ok": {
      const parsed = parseState(read.text, primary);
      return parsed.ok ? { kind: "ok", state: parsed.value } : { kind: "bad", problem: parsed.error };
    }
    case "missing":
      return read;
    case "not-regular":
      return { kind: "bad", problem: `is ${read.what}` };
    case "too-large":
      return { kind: "bad", problem: `is larger than ${read.maxBytes} bytes` };
    case "unreadable":
      return { kind: "bad", problem: read.message };
  }
}

/**
 * The persisted state, checked against its schema on every read. An unusable file is never trusted: the last
 * good copy (state.json.bak) is used instead, and when that is unusable too both are moved aside and the state
 * starts empty, loudly (recover()). A missing file (first start) is the empty state.
 */
export async function readState(file: string, options: StateOptions = {}): Promise<PersistedState> {
  const current = await load(file, options.primary);
  if (current.kind === "ok") return current.state;
  if (current.kind === "missing" && (await load(backupOf(file), options.primary)).kind === "missing")
    return { ...EMPTY_STATE };
  // Judged again under the lock: another process may be replacing the file right now.
  return withStateLock(file, options.lockWaitMs ?? LOCK_WAIT_MS, () => recover(file, options));
}

/** Under the state lock: the file's state, or its last good copy's, or (both unusable) an empty one. */
async function recover(file: string, options: StateOptions): Promise<PersistedState> {
  const current = await load(file, options.primary);
  if (current.kind === "ok") return current.state;
  const backup = await load(backupOf(file), options.primary);
  if (current.kind === "missing" && backup.kind === "missing") return { ...EMPTY_STATE };
  const why = current.kind === "bad" ? current.problem : "is missing";
  if (backup.kind === "ok") {
    // Put back at once, so the damage is reported once and not by every read until the next update.
    await writeFileAtomic(file, serialize(backup.state));
    options.log?.warning(`${file} ${why}; replaced by its last good copy ${backupOf(file)}`, {
      MESSAGE_ID: MessageId.stateRestored,
      STATE_FILE: file,
    });
    return backup.state;
  }
  const stamp = (options.clock ?? systemClock).now().toISOString().replace(/[:.]/g, "");
  const movedTo = `${file}${CORRUPT_INFIX}${stamp}`;
  if (current.kind === "bad") await rename(file, movedTo);
  if (backup.kind === "bad") await rename(backupOf(file), `${movedTo}.bak`);
  await fsyncDir(dirname(file));
  const backupWhy = backup.kind === "bad" ? backup.problem : "is missing";
  options.log?.error(
    `${file} ${why} and its last good copy ${backupWhy}; moved aside to ${movedTo}, starting with an empty state: the rollback target, holds and the image staged for the next boot are forgotten`,
    { MESSAGE_ID: MessageId.stateLost, STATE_FILE: file, REMEDY: stateLostRemedy(movedTo, backup.kind === "bad") },
  );
  return { ...EMPTY_STATE };
}

/** `twin`: the unusable backup was moved aside too, as `<movedTo>.bak`. */
const stateLostRemedy = (movedTo: string, twin: boolean): string =>
  `the next passes rebuild what they can (the active image, the next boot's image); look at ${twin ? `${movedTo} and its backup ${movedTo}.bak` : movedTo} for what was lost (a rollback target, holds), then remove ${twin ? "both" : "it"}: /status says "degraded" while ${twin ? movedTo : "it"} is there`;

/** The newest state file moved aside as unusable, or null: while one is there /status says "degraded". */
export async function stateDamage(file: string): Promise<{ movedTo: string; remedy: string } | null> {
  const prefix = `${basename(file)}${CORRUPT_INFIX}`;
  const names = listing(dirname(file));
  const moved = names.filter((n) => n.startsWith(prefix) && !n.endsWith(".bak")).sort();
  const newest = moved.at(-1);
  if (newest === undefined) return null;
  const movedTo = join(dirname(file), newest);
  return { movedTo, remedy: stateLostRemedy(movedTo, names.includes(`${newest}.bak`)) };
}

/**
 * Removes the temp files of state writes that a crash (kill -9, power loss) left behind. Under the state lock,
 * so no write of another process is between its temp file and its rename. Run at start; returns what it removed.
 */
export async function sweepState(file: string, options: StateOptions = {}): Promise<string[]> {
  mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
  const temps = async () => {
    const names = listing(dirname(file));
    return names.filter((n) => isTempOf(n, basename(file)) || isTempOf(n, basename(backupOf(file))));
  };
  // Looked for first without the lock: there are none but after a crash, and a write under way (which holds the
  // lock) has finished by the time we hold it, its temp file renamed.
  if ((await temps()).length === 0) return [];
  return withStateLock(file, options.lockWaitMs ?? LOCK_WAIT_MS, async () => {
    const stale = await temps();
    for (const name of stale) await rm(join(dirname(file), name), { force: true });
    if (stale.length > 0)
      options.log?.info(`removed ${stale.length} leftover temp file(s) of ${file}: ${stale.join(", ")}`);
    return stale;
  });
}

async function writeState(file: string, previous: PersistedState | null, state: PersistedState): Promise<void> {
  // The state being replaced was read and checked a moment ago: it is the last good copy. A file that did not
  // check out is never copied over a good backup.
  if (previous !== null) await writeFileAtomic(backupOf(file), serialize(previous));
  await writeFileAtomic(file, serialize(state));
}

const serialize = (state: PersistedState): string => `${JSON.stringify(state, null, 2)}\n`;

/** How long an update waits for another process's; each holds the lock only to read and write the file. */
const LOCK_WAIT_MS = 10_000;

/** The last update of each file queued in this process, settled either way; the next one runs after it. */
const queued = new Map<string, Promise<void>>();

/**
 * Read-modify-write of state.json: `change` gets the current state and returns the fields to replace (none, or
 * only with what they hold already: no write). Updates of one file run one at a time, in this process and across
 * processes (flock on `<file>.lock`). `change` is synchronous, so nothing waits for the store lock while holding
 * this one: a pass holds the store lock across its updates, so the order is always store, then state. It is
 * pure: it is asked first of the state as read without the lock (the file is only ever replaced whole, by a
 * rename), and when that changes nothing, nothing is locked or written; otherwise again under the lock.
 */
export function updateState(
  file: string,
  change: (state: PersistedState) => Partial<PersistedState>,
  options: StateOptions = {},
): Promise<PersistedState> {
  const key = resolve(file);
  const update = (queued.get(key) ?? Promise.resolve()).then(async () => {
    mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
    const seen = await readState(file, options);
    if (!alters(seen, change(seen))) return seen;
    return withStateLock(file, options.lockWaitMs ?? LOCK_WAIT_MS, async () => {
      const state = await recover(file, options);
      const changed = change(state);
      if (!alters(state, changed)) return state;
      const next = { ...state, ...changed };
      await writeState(file, state, next);
      return next;
    });
  });
  const settled = update.then(
    () => undefined,
    () => undefined,
  );
  queued.set(key, settled);
  // Forgotten when nothing is queued behind it, so the map does not keep every file ever updated.
  void settled.then(() => {
    if (queued.get(key) === settled) queued.delete(key);
  });
  return update;
}

/** Whether `changed` gives some field of `state` another value (as JSON: the file's own terms). */
function alters(state: PersistedState, changed: Partial<PersistedState>): boolean {
  return Object.entries(changed).some(
    ([key, value]) => JSON.stringify(value) !== JSON.stringify(state[key as keyof PersistedState]),
  );
}

/** Runs `fn` holding the flock on `<file>.lock`: one reader-that-repairs or writer of the file at a time. */
async function withStateLock<T>(file: string, waitMs: number, fn: () => Promise<T>): Promise<T> {
  const lockFile = `${file}.lock`;
  const lock = await acquireLock(lockFile, {
    waitMs,
    held: (owner) =>
      new KataError(
        "store-failed",
        `the state file ${file} is locked by another process${owner !== null ? ` (pid ${owner})` : ""} for more than ${waitMs / 1000} s`,
        {
          remedy: `kata-sysextd holds it only while it writes: if it stays locked, find what holds ${lockFile} with \`lslocks\`, stop it, and try again`,
        },
      ),
  });
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/** Forgets a pending next boot (the update was booted, or update_engine no longer has one pending). */
export async function clearNextBoot(file: string, options: StateOptions = {}): Promise<void> {
  await updateState(file, (state) => (state.nextBoot !== null ? { nextBoot: null } : {}), options);
}

/** Lifts the holds of earlier rollbacks (the configuration changed: the operator decided anew). */
export async function releaseHolds(file: string, options: StateOptions = {}): Promise<void> {
  await updateState(
    file,
    (state) => (Object.keys(state.held).length > 0 ? { held: {}, heldUnder: null } : {}),
    options,
  );
}

/**
 * state.json as the controller holds it: every read and write of the file in a running command or daemon goes
 * through the one StateStore the composition root (src/main/compose.ts) builds, so recoveries are reported in
 * one journal and no other module writes the file.
 */
export interface StateStore {
  readonly file: string;
  read(): Promise<PersistedState>;
  /** Read-modify-write under the file's lock (updateState). */
  update(change: (state: PersistedState) => Partial<PersistedState>): Promise<PersistedState>;
  /** Where an unusable file was moved aside, until it is gone (stateDamage). */
  damage(): Promise<{ movedTo: string; remedy: string } | null>;
  /** Removes what an interrupted write left (sweepState), said in `log` (default: the store's). */
  sweep(log?: Logger): Promise<string[]>;
  clearNextBoot(): Promise<void>;
  releaseHolds(): Promise<void>;
}

/** `primary`: the configured [source] name, under which a schema 1 file's Kata fields are read. */
export function stateStore(file: string, options: StateOptions & { primary: string }): StateStore {
  return {
    file,
    read: () => readState(file, options),
    update: (change) => updateState(file, change, options),
    damage: () => stateDamage(file),
    sweep: (log) => sweepState(file, log === undefined ? options : { ...options, log }),
    clearNextBoot: () => clearNextBoot(file, options),
    releaseHolds: () => releaseHolds(file, options),
  };
}
