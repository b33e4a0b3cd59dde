// The daemon's persisted state (/var/lib/kata-sysextd/state.json), written atomically. The file system (the
// active link, the store) is the truth about images; this file only remembers what cannot be read off it:
// which image was active before, what the next boot should merge, how the last pass ended.
//
// Every write is a read-modify-write through updateState, one writer at a time: a pass writes it under the store
// lock while the daemon records a next boot or lifts holds outside any pass, and a `kata-sysextd --once` may run
// beside the daemon. Two overlapping updates would each write what they read, and one change would be lost.
import { mkdir, readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { KataError } from "../errors.ts";
import { writeFileAtomic } from "./fsutil.ts";
import { acquireLock } from "./lock.ts";

export interface NextBoot {
  flatcarVersion: string;
  kata: string | null;
  file: string | null;
  staged: boolean;
  reason: string | null;
  /** Companion images staged with it, by member name. */
  companions: Record<string, string>;
  /** The Flatcar version that was booted when this was staged, so a boot on the old release can be recognised. */
  stagedOn: string | null;
}

export interface PersistedState {
  schema: 1;
  /** Store file name the active link pointed at before the last switch; the rollback target. */
  previous: string | null;
  /** The same for each companion extension, by name. */
  previousCompanions: Record<string, string | null>;
  nextBoot: NextBoot | null;
  /** Images a pass could not activate under running sandboxes (policy.activation = "next-boot"), by member. */
  deferred: Record<string, string>;
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
   * or undone. Found at the start of a pass, it means the daemon died inside a switch (reconciler.ts).
   */
  switching: LinkChangeRecord[] | null;
  /**
   * The members the last switch moved: a rollback moves those back and leaves the others. Null in a state file
   * written before it was kept (then a rollback considers every member).
   */
  lastSwitch: string[] | null;
}

export interface LinkChangeRecord {
  member: string;
  from: string | null;
  to: string;
}

export const EMPTY_STATE: PersistedState = {
  schema: 1,
  previous: null,
  previousCompanions: {},
  nextBoot: null,
  deferred: {},
  held: {},
  heldUnder: null,
  lastReconcile: null,
  switching: null,
  lastSwitch: null,
};

export async function readState(file: string): Promise<PersistedState> {
  try {
    const parsed = JSON.parse(await readFile(file, "utf8")) as Partial<PersistedState>;
    if (parsed.schema !== 1) return { ...EMPTY_STATE };
    const nextBoot = parsed.nextBoot ? { ...parsed.nextBoot, companions: parsed.nextBoot.companions ?? {} } : null;
    // Fields added later default to empty, so a state file from an older version reads cleanly.
    return {
      ...EMPTY_STATE,
      ...parsed,
      previousCompanions: parsed.previousCompanions ?? {},
      deferred: parsed.deferred ?? {},
      held: parsed.held ?? {},
      nextBoot,
    };
  } catch {
    // Missing or unreadable state is not fatal: everything important can be re-observed from disk.
    return { ...EMPTY_STATE };
  }
}

async function writeState(file: string, state: PersistedState): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(state, null, 2)}\n`);
}

/** How long an update waits for another process's; each holds the lock only to read and write the file. */
const LOCK_WAIT_MS = 10_000;

/** The last update of each file queued in this process, settled either way; the next one runs after it. */
const queued = new Map<string, Promise<void>>();

/**
 * Read-modify-write of state.json: `change` gets the current state and returns the fields to replace (none: no
 * write). Updates of one file run one at a time, in this process and across processes (flock on `<file>.lock`).
 * `change` is synchronous, so nothing waits for the store lock while holding this one: a pass holds the store
 * lock across its updates, so the order is always store, then state.
 */
export function updateState(
  file: string,
  change: (state: PersistedState) => Partial<PersistedState>,
  options: { lockWaitMs?: number } = {},
): Promise<PersistedState> {
  const key = resolve(file);
  const update = (queued.get(key) ?? Promise.resolve()).then(() =>
    updateLocked(file, change, options.lockWaitMs ?? LOCK_WAIT_MS),
  );
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

async function updateLocked(
  file: string,
  change: (state: PersistedState) => Partial<PersistedState>,
  waitMs: number,
): Promise<PersistedState> {
  await mkdir(dirname(file), { recursive: true, mode: 0o755 });
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
    const state = await readState(file);
    const changed = change(state);
    if (Object.keys(changed).length === 0) return state;
    const next = { ...state, ...changed };
    await writeState(file, next);
    return next;
  } finally {
    await lock.release();
  }
}

/** Forgets a pending next boot (the update was booted, or update_engine no longer has one pending). */
export async function clearNextBoot(file: string): Promise<void> {
  await updateState(file, (state) => (state.nextBoot !== null ? { nextBoot: null } : {}));
}

/** Lifts the holds of earlier rollbacks (the configuration changed: the operator decided anew). */
export async function releaseHolds(file: string): Promise<void> {
  await updateState(file, (state) => (Object.keys(state.held).length > 0 ? { held: {}, heldUnder: null } : {}));
}
