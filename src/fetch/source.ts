// The sysupdate-style url-file source (docs/interface.md, [source]): one directory, `<url><name>/` (or a transfer file's
// [Source] Path=), holds every file: SHA256SUMS, its detached OpenPGP signature SHA256SUMS.gpg, metadata.json and
// the images, as systemd-sysupdate fetches them. This file only fetches and authenticates; parsing the manifest
// lines belongs to src/release/manifest.ts.
import { readFile } from "node:fs/promises";
import type { Signature } from "openpgp";
import { type Clock, type Random, systemRandom } from "../clock.ts";
import { KataError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { FetchError, type GetOptions, httpGetBuffer } from "./http.ts";
import { withRetries } from "./retry.ts";

export type Trust = "checksum" | "signature";

export interface SourceOptions {
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  clock: Clock;
  log: Logger;
  /** Extra attempts on transient failures; default 2. */
  retries?: number;
  random?: Random;
  signal?: AbortSignal;
  /** Bound on one attempt at a small file; default SMALL_FILE_DEADLINE_MS. */
  deadlineMs?: number;
}

export interface ManifestOptions extends SourceOptions {
  /** The source directory's URL (sourceDirectory()), ending in "/". */
  dir: string;
  /** Cap on SHA256SUMS ([fetch] manifest_max_bytes). */
  maxBytes: number;
  verify: Trust;
  /** Path of the ASCII-armored keyring; read only when verify = "signature". */
  keyring: string;
}

export interface SignedManifest {
  /** SHA256SUMS as published, authenticated to the level in `trust`. */
  text: string;
  trust: Trust;
}

/** Cap on the optional files next to the images (metadata.json); metadata.ts reads no more either. */
const OPTIONAL_MAX_BYTES = 1 << 20;
const SIGNATURE_MAX_BYTES = 256 << 10;

/** The remedies of files over their caps: only a cap a setting raises names one. */
const MANIFEST_TOO_LARGE = "raise [fetch] manifest_max_bytes if the source really lists that many images";
const fixedCap = (what: string, max: number): string =>
  `${what} is never larger than ${max} bytes: [source] url does not point at a release source`;
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+~-]*$/;

/** The directory every file of a source is fetched from: `<url><name>/`, or the transfer file's Path=. */
export function sourceDirectory(source: { url: string; name: string; path?: string | null }): string {
  if (source.path !== undefined && source.path !== null) return withSlash(source.path);
  return new URL(`${encodeURIComponent(source.name)}/`, withSlash(source.url)).toString();
}

/** URL of a file published next to the manifest; refuses names that could leave the source directory. */
export function fileUrl(dir: string, file: string): string {
  if (!FILE_NAME.test(file) || file.includes("..")) {
    throw new KataError("name-invalid", `refusing image file name "${file}": only a plain file name is allowed`, {
      remedy: "the release's SHA256SUMS lists a name with a path or odd characters; it is not fetched",
    });
  }
  return new URL(file, withSlash(dir)).toString();
}

export function manifestUrl(dir: string): string {
  return new URL("SHA256SUMS", withSlash(dir)).toString();
}

/** Fetches SHA256SUMS and, when asked to, checks its detached signature; any doubt means no manifest. */
export async function fetchManifest(opts: ManifestOptions): Promise<SignedManifest> {
  const url = manifestUrl(opts.dir);
  const bytes = await getWithRetries(url, opts.maxBytes, opts, MANIFEST_TOO_LARGE);
  if (opts.verify === "checksum") return { text: bytes.toString("utf8"), trust: "checksum" };

  let signature: Buffer;
  try {
    signature = await getWithRetries(
      `${url}.gpg`,
      SIGNATURE_MAX_BYTES,
      opts,
      fixedCap("a detached signature", SIGNATURE_MAX_BYTES),
    );
  } catch (err) {
    if (err instanceof FetchError && err.status === 404) {
      throw new KataError("signature-invalid", `${url}.gpg is missing, so SHA256SUMS cannot be trusted`, {
        remedy:
          'publish SHA256SUMS.gpg next to SHA256SUMS, or set [source] verify = "checksum" (Verify=no in the [source] sysupdate transfer file)',
        cause: err,
      });
    }
    throw err;
  }
  await verifyDetached(bytes, signature, opts.keyring, url, opts.clock.now());
  opts.log.info("SHA256SUMS signature verified", { URL: url });
  return { text: bytes.toString("utf8"), trust: "signature" };
}

/** An optional file next to the images (release notes, metadata): null when the server says 404. */
export async function fetchOptional(url: string, opts: SourceOptions): Promise<string | null> {
  try {
    const tooLarge = fixedCap(url.slice(url.lastIndexOf("/") + 1), OPTIONAL_MAX_BYTES);
    return (await getWithRetries(url, OPTIONAL_MAX_BYTES, opts, tooLarge)).toString("utf8");
  } catch (err) {
    if (err instanceof FetchError && err.status === 404) return null;
    throw err;
  }
}

/**
 * How far a signature may be dated after this host's clock. A publisher that signs and publishes at once, seen by
 * a host whose clock is a little behind, is no attack; a signature from further ahead points at the clock.
 */
export const SIGNATURE_CLOCK_SKEW_MS = 60 * 60 * 1000;

const KEY_BLOCK = /-----BEGIN PGP PUBLIC KEY BLOCK-----[\s\S]*?-----END PGP PUBLIC KEY BLOCK-----/g;

/** Throws signature-invalid unless `signature` (binary or armored) is a good signature over `data` by the keyring. */
export async function verifyDetached(
  data: Buffer,
  signature: Buffer,
  keyringPath: string,
  what: string,
  now: Date,
): Promise<void> {
  const invalid = (why: string, cause?: unknown): KataError =>
    new KataError("signature-invalid", `${what}: ${why}; nothing from this manifest is used`, {
      remedy: /in the future/i.test(why)
        ? `the signature is dated more than ${SIGNATURE_CLOCK_SKEW_MS / 60_000} minutes after this host's clock (${now.toISOString()}): check time synchronisation (timedatectl status)`
        : "check that [source] keyring holds the release signing key and that the release is not tampered with",
      cause,
    });
  let armoredKeys: string;
  try {
    armoredKeys = await readFile(keyringPath, "utf8");
  } catch (cause) {
    const why = (cause as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (cause as Error).message;
    throw invalid(`cannot read keyring ${keyringPath}: ${why}`, cause);
  }
  try {
    // Loaded on first use: only signature verification needs it, and it is the largest module we have.
    const { createMessage, readKeys, readSignature, verify } = await import("openpgp");
    // A keyring file is often several exports appended one after another (key rotation): read every block.
    const blocks = armoredKeys.match(KEY_BLOCK) ?? [];
    if (blocks.length === 0) throw new Error(`${keyringPath} holds no ASCII-armored public key block`);
    const verificationKeys = (await Promise.all(blocks.map((block) => readKeys({ armoredKeys: block })))).flat();
    const sig: Signature = signature.toString("latin1").trimStart().startsWith("-----BEGIN PGP SIGNATURE-----")
      ? await readSignature({ armoredSignature: signature.toString("utf8") })
      : await readSignature({ binarySignature: new Uint8Array(signature) });
    const message = await createMessage({ binary: new Uint8Array(data) });
    const date = new Date(now.getTime() + SIGNATURE_CLOCK_SKEW_MS);
    const result = await verify({ message, signature: sig, verificationKeys, expectSigned: true, date });
    // expectSigned already throws on a bad signature; this also covers a signature list without a good entry.
    const checks = await Promise.all(result.signatures.map((s) => s.verified.catch(() => false)));
    if (!checks.includes(true)) throw new Error("no valid signature by a key in the keyring");
  } catch (cause) {
    throw invalid(`signature check failed (${cause instanceof Error ? cause.message : String(cause)})`, cause);
  }
}

/**
 * Longest one attempt at a manifest, signature or metadata file may take: they are small, and a server that
 * trickles a byte now and then never trips the idle timeout, which would hold the pass (and every request queued
 * behind it) for as long as it liked. Images have their minimum speed instead (download.ts).
 */
export const SMALL_FILE_DEADLINE_MS = 120_000;

function getWithRetries(url: string, maxBytes: number, opts: SourceOptions, tooLargeRemedy: string): Promise<Buffer> {
  const policy = { ...opts, retries: opts.retries ?? 2, random: opts.random ?? systemRandom };
  const deadlineMs = opts.deadlineMs ?? SMALL_FILE_DEADLINE_MS;
  return withRetries(`fetch of ${url}`, policy, async () => {
    const deadline = AbortSignal.timeout(deadlineMs);
    const signal = opts.signal === undefined ? deadline : AbortSignal.any([opts.signal, deadline]);
    const get: GetOptions = {
      connectTimeoutMs: opts.connectTimeoutMs,
      idleTimeoutMs: opts.idleTimeoutMs,
      maxBytes,
      tooLargeRemedy,
      signal,
    };
    try {
      return await httpGetBuffer(url, get);
    } catch (err) {
      // Our deadline, not the caller's cancellation: a timeout, retried like one.
      if (deadline.aborted && opts.signal?.aborted !== true) {
        throw new FetchError("timeout", url, `not complete after ${deadlineMs / 1000} s`, { cause: err });
      }
      throw err;
    }
  });
}

function withSlash(url: string): string {
  return url.endsWith("/") ? url : `${url}/`;
}
