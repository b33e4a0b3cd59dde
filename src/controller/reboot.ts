// Should this node ask the cluster's reboot coordinator (kured, through its sentinel file) for a reboot, and why?
// Pure: what the pass deferred, the policy, the clock and update_engine's pending release in; the verdict out.
// test/unit/controller/reboot.test.ts drives it with a table.
import type { ActivationPolicy } from "../config/schema.ts";

/** An image a pass could not activate because Kata sandboxes run. */
export interface HeldBackImage {
  member: string;
  version: string;
  /** Kata itself, as opposed to a companion extension. */
  primary: boolean;
}

export interface RebootInput {
  /** What the pass could not activate under running sandboxes; empty when nothing waits. */
  heldBack: HeldBackImage[];
  activation: ActivationPolicy;
  /** Since when passes have been deferring (epoch ms); the first deferral when null. */
  waitingSinceMs: number | null;
  maxWaitSeconds: number;
  nowMs: number;
  /** An OS update update_engine installed and waits to reboot into (state.json's next boot), or null. */
  osUpdate: { flatcarVersion: string; kata: string | null; staged: boolean } | null;
}

export type RebootVerdict =
  | {
      request: false;
      /** When to decide again: the wait for sandboxes runs out then (ms from now); null: nothing will change by itself. */
      recheckAfterMs: number | null;
    }
  | {
      request: true;
      /** One line for the sentinel, /status and the journal. */
      reason: string;
    };

export function decideReboot(input: RebootInput): RebootVerdict {
  if (input.heldBack.length === 0 || input.activation === "force") return { request: false, recheckAfterMs: null };
  // The reason names nothing that changes while the request stands (the sandbox count, the time waited so far):
  // a new reason rewrites the sentinel and is a new journal record.
  const images = describeHeldBack(input.heldBack);
  const one = input.heldBack.length === 1;
  let why: string;
  if (input.activation === "next-boot") {
    why = `${images} ${one ? "is" : "are"} staged and ${one ? "activates" : "activate"} at the next boot (policy.activation = "next-boot")`;
  } else {
    if (input.maxWaitSeconds === 0) return { request: false, recheckAfterMs: null };
    const since = input.waitingSinceMs ?? input.nowMs;
    // A clock that went back counts as no time waited, not as negative time.
    const waitedMs = Math.max(0, input.nowMs - since);
    const limitMs = input.maxWaitSeconds * 1000;
    if (waitedMs < limitMs) return { request: false, recheckAfterMs: limitMs - waitedMs };
    why = `${images} waited ${duration(input.maxWaitSeconds)} for running Kata sandboxes to end (policy.max_wait_seconds = ${input.maxWaitSeconds}) and ${one ? "activates" : "activate"} at the next boot`;
  }
  const os = input.osUpdate;
  if (os === null) return { request: true, reason: why };
  // The reboot goes into the new release: what it activates is the Kata staged for that release (already fetched).
  if (os.staged && os.kata !== null) {
    return {
      request: true,
      reason: `Kata ${os.kata} is staged for Flatcar ${os.flatcarVersion}, which update_engine installed and waits to reboot into: one reboot serves both (${why})`,
    };
  }
  return {
    request: true,
    reason: `${why}; Flatcar ${os.flatcarVersion} also waits for this reboot, and no Kata image is staged for it yet`,
  };
}

/** "Kata 3.32.0", "Kata 3.32.0 and cloud-hypervisor 53.0". */
export function describeHeldBack(images: readonly HeldBackImage[]): string {
  const names = images.map((i) => `${i.primary ? "Kata" : i.member} ${i.version}`);
  return names.length <= 1 ? (names[0] ?? "") : `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
}

/** A configured number of seconds in its largest whole unit: 86400 -> "24 h", 5400 -> "90 min", 42 -> "42 s". */
export function duration(seconds: number): string {
  if (seconds >= 3600 && seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds >= 60 && seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}
