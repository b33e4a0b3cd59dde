// The words the controller and the adapters share: the members of the managed set, what a pass wants for each,
// the release source a member fetches from, and the events a pass reports. Types only, below both, so neither
// imports the other for them.
import type { CanaryResult } from "./canary/canary.ts";
import type { ErrorCode } from "./errors.ts";
import type { Downloaded } from "./fetch/download.ts";
import type { Trust } from "./fetch/source.ts";
import type { DaemonState, DownloadProgress, PreflightSummary } from "./status.ts";
import type { ActiveLink } from "./store/link.ts";

/** One extension the daemon manages: Kata itself (primary) or a companion such as cloud-hypervisor. */
export interface Member {
  name: string;
  primary: boolean;
  link: ActiveLink;
  source: ReleaseSource;
  /** Acceptable versions (semver range). */
  versions: string;
}

/** The image a pass wants active for one member. */
export interface Target {
  version: string;
  file: string;
  /** Present when the image must still be fetched. */
  remote: { url: string; sha256: string } | null;
}

/** What a pass wants active, per member name; null where nothing qualifies. */
export type Targets = Map<string, Target | null>;

/** Progress a pass reports while it runs (the daemon shows it on /status). */
export type ReconcileEvent =
  | { kind: "state"; state: DaemonState }
  | { kind: "download"; progress: DownloadProgress | null }
  | { kind: "preflight"; summary: PreflightSummary }
  /** A switch failed and was undone: the previous images are linked and merged again. */
  | { kind: "rolled-back" }
  /** A canary ran (the last health stage of a switch, or asked for): its result, passed or not. */
  | { kind: "canary"; result: CanaryResult };

export interface PublishedManifest {
  text: string;
  trust: Trust;
  /** The optional per-release metadata file's text, or null when the source publishes none. */
  metadata: string | null;
  /** Why metadata.json could not be fetched (network trouble after the retries), or null. */
  metadataUnavailable: string | null;
}

/** A member's release source as the controller sees it: an authenticated manifest and verified downloads. */
export interface ReleaseSource {
  readonly trust: Trust;
  manifest(): Promise<PublishedManifest>;
  imageUrl(file: string): string;
  download(file: string, sha256: string, into: string, onProgress: (p: DownloadProgress) => void): Promise<Downloaded>;
}

/** A published image that failed a pass (download, verification, inspection), remembered in state.json. */
export interface CandidateFailure {
  file: string;
  version: string;
  /** The digest SHA256SUMS published the image with when it failed. */
  sha256: string;
  code: ErrorCode;
  reason: string;
  attempts: number;
  firstAt: string;
  lastAt: string;
  /** When a pass may try it again; null: never (the same bytes failed inspection). */
  retryAt: string | null;
  /** fetch-too-large: the [fetch] max_bytes it was over; under a larger cap it is tried again at once. */
  maxBytes?: number;
}

/**
 * A published image fetched before and found to be made for another release of this OS (admit.ts), remembered in
 * state.json by the digest SHA256SUMS gave it, with its extension-release: judged again for whichever release a
 * decision is for, it is skipped where it cannot merge without being fetched again, although it may be pruned.
 */
export interface OtherReleaseImage {
  file: string;
  version: string;
  sha256: string;
  /** The image's own extension-release text, as the store recorded it. */
  extensionRelease: string;
}

/** A published candidate a pass leaves out, and why; shown on /status and by `kata-sysextctl versions`. */
export interface SkippedCandidate {
  file: string;
  version: string;
  reason: string;
  retryAt: string | null;
}
