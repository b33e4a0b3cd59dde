// The canary as the controller runs it: for a Kata image, with the runtime [health] names. The default runtime,
// io.containerd.kata.v2, runs as the registered "kata" handler does: with that handler's Kata configuration
// (src/containerd/handlers.ts decides it for the registration too), so the canary proves what pods will get.
import { KATA_RUNTIME } from "../config/schema.ts";
import { runtimeHandlers } from "../containerd/handlers.ts";
import type { StoredImage } from "../store/store.ts";
import type { Canary, CanaryPhase, CanaryResult } from "./canary.ts";

export interface CanaryProbe {
  /** The handler name results and labels carry: "kata" for Kata's runtime, else the runtime type itself. */
  readonly handler: string;
  /** Starts the canary for `image`, the Kata image active (or being switched to); null when none is. */
  run(image: StoredImage | null, onProgress?: (phase: CanaryPhase) => void): Promise<CanaryResult>;
  sweep(): Promise<string[]>;
}

export interface ProbeDeps {
  canary: Canary;
  runtime: string;
  timeoutSeconds: number;
  /** Resolves host paths under --root: where the operator's Kata configuration is looked for. */
  host: (path: string) => string;
}

/** The handler name a canary with `runtime` proves: "kata" for Kata's runtime type, else the type itself. */
export function canaryHandler(runtime: string): string {
  return runtime === KATA_RUNTIME ? "kata" : runtime;
}

export function canaryProbe(deps: ProbeDeps): CanaryProbe {
  const kata = deps.runtime === KATA_RUNTIME;
  const handler = canaryHandler(deps.runtime);
  return {
    handler,
    sweep: () => deps.canary.sweep(),
    async run(image, onProgress) {
      const handlers = kata && image !== null ? await runtimeHandlers(image.kataConfigs, deps.host) : [];
      return deps.canary.run({
        handler,
        runtime: deps.runtime,
        runtimeConfigPath: handlers.find((h) => h.name === "kata")?.configPath ?? null,
        timeoutMs: deps.timeoutSeconds * 1000,
        image: image?.file ?? null,
        onProgress,
      });
    },
  };
}
