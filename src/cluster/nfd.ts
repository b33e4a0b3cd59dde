// The node's Kata readiness for Kubernetes, through Node Feature Discovery's local feature source: a file in
// /etc/kubernetes/node-feature-discovery/features.d/ with one `<namespace>/<name>=<value>` label per line. The
// labels use feature.node.kubernetes.io/, the namespace NFD accepts without extra configuration. Written to a dot
// file and renamed (NFD skips dot files), so nfd-worker never reads half of it.
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { readSmallFile } from "../files.ts";
import type { Logger } from "../log/logger.ts";
import { writeFileAtomic } from "../store/fsutil.ts";

/** Ours is a few lines; a larger file there is not ours, and is replaced. */
const FEATURE_FILE_MAX_BYTES = 64 * 1024;

export const LABEL_PREFIX = "feature.node.kubernetes.io/kata-sysextd";

export interface NodeReadiness {
  ready: boolean;
  /** The active Kata version; null when none is. */
  version: string | null;
  /** Runtime handlers whose canary passed with the active image. */
  handlers: string[];
}

export const NOT_READY: NodeReadiness = { ready: false, version: null, handlers: [] };

/** A label name or value as Kubernetes allows it: [A-Za-z0-9._-], alphanumeric at both ends, at most 63. */
function labelSafe(text: string): string {
  const cleaned = text.replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 63);
  return cleaned.replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, "");
}

/** The handler's label, e.g. feature.node.kubernetes.io/kata-sysextd.handler.kata: what a RuntimeClass selects on. */
export const handlerLabel = (handler: string): string => `${LABEL_PREFIX}.handler.${labelSafe(handler)}`;

/** The feature file's text: readiness always, the version and the proven handlers only while ready. */
export function featureFileText(readiness: NodeReadiness): string {
  const lines = ["# Written by kata-sysextd: this node's Kata readiness. Do not edit; it is rewritten."];
  lines.push(`${LABEL_PREFIX}.ready=${readiness.ready}`);
  if (readiness.ready) {
    if (readiness.version !== null) lines.push(`${LABEL_PREFIX}.version=${labelSafe(readiness.version)}`);
    for (const handler of [...readiness.handlers].sort()) lines.push(`${handlerLabel(handler)}=true`);
  }
  return `${lines.join("\n")}\n`;
}

export interface ClusterReadiness {
  /** Says "ready" with the version and handlers given. */
  publish(readiness: NodeReadiness): Promise<void>;
  /** Says "not ready": before a switch starts, on a failed canary, on a clean stop. */
  withdraw(why: string): Promise<void>;
}

/** The feature file at `path` (already resolved under --root); every write replaces it whole. */
export function nfdFeatureFile(path: string, log: Logger): ClusterReadiness {
  /** What the file says: as found at the first write (undefined before it), then as this process wrote it. */
  let last: string | null | undefined;
  let lastFailure: string | null = null;
  /**
   * Writes unless the file already says so; returns whether it wrote. A file that cannot be written is a warning,
   * said once per cause, and tried again next time: the labels are advice to the scheduler, and a pass that keeps
   * Kata working must not fail over them. The common boot finds the labels as the last pass left them: it reads
   * them instead of replacing them with the same (a write is a temp file, two fsyncs and a rename).
   */
  const write = async (readiness: NodeReadiness): Promise<boolean> => {
    const text = featureFileText(readiness);
    if (last === undefined) {
      const found = await readSmallFile(path, FEATURE_FILE_MAX_BYTES);
      last = found.kind === "ok" ? found.text : null;
    }
    if (text === last) return false;
    try {
      await mkdir(dirname(path), { recursive: true });
      await writeFileAtomic(path, text);
    } catch (err) {
      const cause = err instanceof Error ? err.message : String(err);
      if (cause !== lastFailure) {
        log.warning(
          `Node Feature Discovery labels not written to ${path}: ${cause}; the node's labels are stale until it ` +
            "can be written (under the systemd unit, add its folder to ReadWritePaths= in a drop-in, or set " +
            '[cluster] nfd_features_file = "" to turn the labels off)',
          { ERROR_CODE: "nfd-write-failed" },
        );
        lastFailure = cause;
      }
      return false;
    }
    last = text;
    lastFailure = null;
    return true;
  };
  return {
    async publish(readiness) {
      if (await write(readiness)) {
        const what = readiness.ready ? `ready, kata ${readiness.version ?? "none"}` : "not ready";
        log.info(`Node Feature Discovery labels: ${what}, handlers ${readiness.handlers.join(", ") || "none"}`);
      }
    },
    async withdraw(why) {
      if (await write(NOT_READY)) log.info(`Node Feature Discovery labels: not ready (${why})`);
    },
  };
}
