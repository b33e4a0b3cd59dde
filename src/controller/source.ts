// The release source as the reconciler sees it: an authenticated manifest and verified downloads.
// Wraps src/fetch with the configured timeouts, limits and trust level.
import type { Clock, Random } from "../clock.ts";
import type { Config } from "../config/schema.ts";
import { type Downloaded, downloadImage } from "../fetch/download.ts";
import { fetchManifest, fetchOptional, imageUrl, type Trust } from "../fetch/source.ts";
import type { Logger } from "../log/logger.ts";
import { metadataUrl } from "../release/metadata.ts";
import type { DownloadProgress } from "../status.ts";

export interface PublishedManifest {
  text: string;
  trust: Trust;
  /** The optional per-release metadata file's text, or null when the source publishes none. */
  metadata: string | null;
}

export interface ReleaseSource {
  readonly trust: Trust;
  manifest(): Promise<PublishedManifest>;
  imageUrl(file: string): string;
  download(file: string, sha256: string, into: string, onProgress: (p: DownloadProgress) => void): Promise<Downloaded>;
}

/** A url-file source for one member: its own url, name and verification; the [fetch] limits are shared. */
export function urlFileSource(
  config: Config,
  source: Pick<Config["source"], "url" | "name" | "verify" | "keyring">,
  deps: { clock: Clock; random: Random; log: Logger },
): ReleaseSource {
  const timeouts = {
    connectTimeoutMs: config.fetch.connectTimeoutSeconds * 1000,
    idleTimeoutMs: config.fetch.idleTimeoutSeconds * 1000,
  };
  const { url, name, verify, keyring } = source;
  return {
    trust: verify,
    async manifest() {
      const common = {
        ...timeouts,
        clock: deps.clock,
        log: deps.log,
        random: deps.random,
        retries: config.fetch.retries,
      };
      const manifest = await fetchManifest({ ...common, url, name, verify, keyring });
      const metadata = await fetchOptional(metadataUrl(url, name), common);
      return { text: manifest.text, trust: manifest.trust, metadata };
    },
    imageUrl: (file) => imageUrl(url, file),
    download: (file, sha256, into, onProgress) =>
      downloadImage({
        url: imageUrl(url, file),
        dest: `${into}/${file}`,
        tmpDir: into,
        expectedSha256: sha256,
        maxBytes: config.fetch.maxBytes,
        retries: config.fetch.retries,
        ...timeouts,
        clock: deps.clock,
        random: deps.random,
        log: deps.log,
        onProgress,
      }),
  };
}
