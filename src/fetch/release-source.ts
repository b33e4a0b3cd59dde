// A member's release source (model.ts ReleaseSource) over the url-file layout: source.ts's authenticated
// manifest and metadata, download.ts's verified downloads, with the configured timeouts, limits and trust level.
import type { Clock, Random } from "../clock.ts";
import type { Config } from "../config/schema.ts";
import { KataError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { ReleaseSource } from "../model.ts";
import { type Manifest, parseManifest } from "../release/manifest.ts";
import { METADATA_FILE } from "../release/metadata.ts";
import { sha256Hex } from "../sha256.ts";
import { downloadImage } from "./download.ts";
import { FetchError } from "./http.ts";
import { fetchManifest, fetchOptional, fileUrl, sourceDirectory, type Trust } from "./source.ts";

/**
 * metadata.json steers which version is chosen (withdrawals, constraints), so it is trusted as far as the
 * verified SHA256SUMS vouches for it. Listed there (as "metadata.json"), it must be served and match its digest:
 * then stripping or altering it fails the pass. Not listed, it is used with verify = "checksum" (nothing is
 * authenticated then anyway), and ignored with verify = "signature", where only signed content may decide.
 */
function vouchedMetadata(
  served: string | null,
  unavailable: string | null,
  manifest: Manifest,
  verify: Trust,
  log: Logger,
): string | null {
  const line = manifest.entries.find((e) => e.file === METADATA_FILE);
  if (line !== undefined) {
    // Listed, the publisher vouches for it: going on without it would let whoever blocks one request strip
    // the withdrawals it carries.
    if (unavailable !== null) {
      throw new KataError(
        "fetch-failed",
        `SHA256SUMS lists ${METADATA_FILE}, but it could not be fetched: ${unavailable}`,
        {
          remedy: "the pass is retried; check the network path to the source",
        },
      );
    }
    if (served === null) {
      throw new KataError("manifest-invalid", `SHA256SUMS lists ${METADATA_FILE}, but the source does not serve it`, {
        remedy: `publish ${METADATA_FILE} next to SHA256SUMS, or drop its line from SHA256SUMS`,
      });
    }
    const digest = sha256Hex(served);
    if (digest !== line.sha256) {
      throw new KataError("digest-mismatch", `${METADATA_FILE}: SHA-256 is ${digest}, SHA256SUMS says ${line.sha256}`, {
        remedy: `the published ${METADATA_FILE} or its SHA256SUMS line is wrong or was tampered with`,
      });
    }
    return served;
  }
  if (served !== null && verify === "signature") {
    log.warning(`${METADATA_FILE} is not listed in the signed SHA256SUMS; ignored`, {
      REMEDY: `add a "${METADATA_FILE}" line to SHA256SUMS before signing it, so its withdrawals and constraints count`,
    });
    return null;
  }
  return served;
}

/** A url-file source for one member: its own url, name and verification; the [fetch] limits are shared. */
export function urlFileSource(
  config: Config,
  source: Pick<Config["source"], "url" | "name" | "verify" | "keyring"> & { path?: string | null },
  deps: {
    clock: Clock;
    random: Random;
    log: Logger;
    /** Aborts manifest fetches, downloads and the waits between their retries (the daemon stopping). */
    signal?: AbortSignal;
  },
): ReleaseSource {
  const timeouts = {
    connectTimeoutMs: config.fetch.connectTimeoutSeconds * 1000,
    idleTimeoutMs: config.fetch.idleTimeoutSeconds * 1000,
  };
  const { verify, keyring } = source;
  const dir = sourceDirectory(source);
  return {
    trust: verify,
    async manifest() {
      const common = {
        ...timeouts,
        clock: deps.clock,
        log: deps.log,
        random: deps.random,
        retries: config.fetch.retries,
        signal: deps.signal,
      };
      const manifest = await fetchManifest({
        ...common,
        dir,
        verify,
        keyring,
        maxBytes: config.fetch.manifestMaxBytes,
      });
      // Optional: 404 means none; network trouble after the retries is the caller's to judge (decide.ts).
      let served: string | null = null;
      let unavailable: string | null = null;
      try {
        served = await fetchOptional(fileUrl(dir, METADATA_FILE), common);
      } catch (err) {
        if (!(err instanceof FetchError) || err.kind === "aborted") throw err;
        unavailable = err.message;
      }
      const metadata = vouchedMetadata(served, unavailable, parseManifest(manifest.text), verify, deps.log);
      return { text: manifest.text, trust: manifest.trust, metadata, metadataUnavailable: unavailable };
    },
    imageUrl: (file) => fileUrl(dir, file),
    download: (file, sha256, into, onProgress) =>
      downloadImage({
        url: fileUrl(dir, file),
        dest: `${into}/${file}`,
        tmpDir: into,
        expectedSha256: sha256,
        maxBytes: config.fetch.maxBytes,
        retries: config.fetch.retries,
        minBytesPerSecond: config.fetch.minBytesPerSecond,
        ...timeouts,
        clock: deps.clock,
        random: deps.random,
        log: deps.log,
        onProgress,
        signal: deps.signal,
      }),
  };
}
