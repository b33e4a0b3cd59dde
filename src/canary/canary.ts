// The canary: prove that a sandbox starts with a runtime handler by starting one, the way an operator would. One
// short-lived container through containerd, from the tiny image kata-sysextd ships (oci.ts), whose program prints
// a marker and exits 0 within a timeout. Whatever happens, nothing of it stays in containerd.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Clock, Random } from "../clock.ts";
import { asKataError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { CanaryStatus } from "../status.ts";
import { type ContainerdClient, isImageMissing, type RunOutcome } from "./ctr.ts";
import { CANARY_MARKER, layoutRef } from "./oci.ts";

/**
 * The image kata-sysextd ships: where the sysext's wrapper says (KATA_SYSEXTD_CANARY_IMAGE), else what
 * `npm ci` built into this checkout's build/ (scripts/build-canary.ts).
 */
export function shippedCanaryImage(): string {
  return process.env.KATA_SYSEXTD_CANARY_IMAGE || join(import.meta.dirname, "..", "..", "build", "canary.oci.tar");
}

/** Container and snapshot names start with this; the sweep removes whatever a killed daemon left with it. */
export const CANARY_ID_PREFIX = "kata-sysextd-canary-";

/** Where a failed canary failed: its image could not be imported, the runtime did not start it, it did not end in
 * time, it printed something else, or it exited with another status. */
export type CanaryStep = "image" | "start" | "timeout" | "output" | "exit";
export type CanaryPhase = "import" | "start" | "cleanup";

export interface CanaryRequest {
  /** The runtime handler's name as pods ask for it ("kata"), or the runtime type itself when it is not Kata's. */
  handler: string;
  runtime: string;
  runtimeConfigPath: string | null;
  timeoutMs: number;
  /** The Kata image the canary proves (a file in the store), or null when none is active. */
  image: string | null;
  onProgress?: (phase: CanaryPhase) => void;
}

/** A run's result: what /status keeps (CanaryStatus), with the step typed and what the canary printed. */
export interface CanaryResult extends CanaryStatus {
  step: CanaryStep | null;
  /** What the canary printed (its first line), for the journal. */
  output: string;
}

/** How a finished `ctr run` is judged: passed with its first line, or failed at a step with the reason. */
export type Verdict = { passed: true; output: string } | { passed: false; step: CanaryStep; reason: string };

/**
 * Judges one run, pure. A line "ctr: …" on stderr with a non-zero exit is containerd refusing to start it (its
 * words kept); a non-zero exit without one is the program's own status; exit 0 must print the marker first.
 */
export function judgeRun(outcome: RunOutcome, runtime: string, timeoutMs: number): Verdict {
  if (outcome.kind === "timeout") {
    return { passed: false, step: "timeout", reason: `no exit within ${timeoutMs / 1000} s (${outcome.detail})` };
  }
  const first = outcome.stdout.split("\n")[0] ?? "";
  const ctrError = outcome.stderr
    .split("\n")
    .filter((line) => line.startsWith("ctr: "))
    .join("; ");
  if (outcome.exitCode !== 0 && ctrError !== "") {
    return { passed: false, step: "start", reason: `runtime ${runtime} could not start the canary: ${ctrError}` };
  }
  if (outcome.exitCode !== 0) {
    const printed = first ? ` after printing "${first.slice(0, 200)}"` : "";
    return { passed: false, step: "exit", reason: `the canary exited ${outcome.exitCode}${printed}` };
  }
  if (!first.startsWith(CANARY_MARKER)) {
    const reason = `the canary printed "${first.slice(0, 200)}" instead of "${CANARY_MARKER} …"`;
    return { passed: false, step: "output", reason };
  }
  return { passed: true, output: first };
}

export interface CanaryDeps {
  containerd: ContainerdClient;
  /** The OCI layout tarball kata-sysextd ships (scripts/build-canary.ts). */
  imageFile: string;
  clock: Clock;
  random: Random;
  log: Logger;
}

export interface Canary {
  run(req: CanaryRequest): Promise<CanaryResult>;
  /** Removes every canary container, task and snapshot left behind (a daemon killed while one ran). */
  sweep(): Promise<string[]>;
}

class StepFailed extends Error {
  readonly step: CanaryStep;
  constructor(step: CanaryStep, message: string) {
    super(message);
    this.step = step;
  }
}

export function canary(deps: CanaryDeps): Canary {
  let swept = false;
  let ref: string | null = null;

  const sweep = async (): Promise<string[]> => {
    const left = await deps.containerd.leftovers(CANARY_ID_PREFIX);
    for (const id of left) await deps.containerd.remove(id);
    swept = true;
    if (left.length > 0) deps.log.notice(`removed ${left.length} canary container(s) left behind: ${left.join(", ")}`);
    return left;
  };

  const imageRef = async (): Promise<string> => {
    if (ref !== null) return ref;
    let tar: Buffer;
    try {
      tar = await readFile(deps.imageFile);
    } catch (err) {
      throw new StepFailed("image", `cannot read the canary image ${deps.imageFile}: ${asKataError(err).message}`);
    }
    try {
      ref = layoutRef(tar, deps.imageFile);
    } catch (err) {
      throw new StepFailed("image", asKataError(err).message);
    }
    return ref;
  };

  const attempt = async (req: CanaryRequest, id: string, deadline: number): Promise<string> => {
    const remaining = () => Math.max(1, Math.round(deadline - deps.clock.monotonicMs()));
    const image = await imageRef();
    // Once per process: whatever an earlier daemon left (it was killed while a canary ran) goes first.
    if (!swept) await sweep();
    req.onProgress?.("start");
    const start = () =>
      deps.containerd.run({
        id,
        ref: image,
        runtime: req.runtime,
        runtimeConfigPath: req.runtimeConfigPath,
        timeoutMs: remaining(),
      });
    let outcome = await start();
    // Imported only when missing: the common case costs one ctr process, not two.
    if (outcome.kind === "exited" && outcome.exitCode !== 0 && isImageMissing(outcome.stderr, image)) {
      req.onProgress?.("import");
      try {
        await deps.containerd.importImage(deps.imageFile, remaining());
      } catch (err) {
        throw new StepFailed("image", asKataError(err).message);
      }
      req.onProgress?.("start");
      outcome = await start();
    }
    const verdict = judgeRun(outcome, req.runtime, req.timeoutMs);
    if (!verdict.passed) throw new StepFailed(verdict.step, verdict.reason);
    return verdict.output;
  };

  return {
    sweep,
    async run(req) {
      const started = deps.clock.monotonicMs();
      const at = deps.clock.now().toISOString();
      const id = `${CANARY_ID_PREFIX}${Math.floor(deps.random() * 2 ** 32)
        .toString(16)
        .padStart(8, "0")}`;
      const result = (outcome: Pick<CanaryResult, "outcome" | "step" | "reason" | "output">): CanaryResult => ({
        handler: req.handler,
        runtime: req.runtime,
        image: req.image,
        at,
        durationMs: Math.round(deps.clock.monotonicMs() - started),
        ...outcome,
      });
      try {
        const output = await attempt(req, id, started + req.timeoutMs);
        return result({ outcome: "passed", step: null, reason: null, output });
      } catch (err) {
        const step = err instanceof StepFailed ? err.step : "start";
        const reason = err instanceof StepFailed ? err.message : asKataError(err).message;
        // `ctr run --rm` removes what it created unless it was cut short; removing again is cheap and certain.
        req.onProgress?.("cleanup");
        try {
          await deps.containerd.remove(id);
        } catch (cleanupErr) {
          deps.log.warning(`canary ${id}: ${asKataError(cleanupErr).message}; the next start sweeps it`);
        }
        return result({ outcome: "failed", step, reason, output: "" });
      }
    },
  };
}
