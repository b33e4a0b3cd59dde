// The verified image store, /var/lib/kata-sysextd/images (never under /opt: a merged sysext shipping /opt makes
// /opt read-only on Flatcar). A file only ever enters the store by rename after its digest was verified and
// its extension-release inspected, and its record (<file>.json) is written before that rename, so every image
// in the store is complete, verified and described, whatever moment a crash hits.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { KataError } from "../errors.ts";
import { listing } from "../files.ts";
import { fsyncDir, removeDurably, writeFileAtomic } from "./fsutil.ts";

export interface ImageRecord {
  file: string;
  name: string;
  version: string;
  arch: string;
  sha256: string;
  bytes: number;
  /** How the image was verified: "checksum" (SHA256SUMS) or "signature" (SHA256SUMS.gpg too). */
  trust: "checksum" | "signature";
  verifiedAt: string;
  /** The image's own extension-release file, verbatim as read at inspection. */
  extensionRelease: string;
  /** The Kata configuration files the image ships (opt/kata/share/defaults/kata-containers/configuration*.toml). */
  kataConfigs: string[];
  /** Every file and symlink the image ships, for the check that members of a set never ship the same path. */
  files: string[];
}

export interface StoredImage extends ImageRecord {
  path: string;
}

const RECORD_SUFFIX = ".json";
const REASON_SUFFIX = ".reason";
/** Quarantined images kept for inspection; older ones are deleted, their reasons kept. */
export const QUARANTINE_KEEP_IMAGES = 2;
const INCOMING = ".incoming";

export class ImageStore {
  readonly dir: string;
  readonly quarantineDir: string;

  constructor(dir: string, quarantineDir: string) {
    this.dir = dir;
    this.quarantineDir = quarantineDir;
  }

  /** Where downloads land before they are verified and inspected; same filesystem as the store. */
  get incomingDir(): string {
    return join(this.dir, INCOMING);
  }

  /**
   * The source's metadata.json as last fetched: the boot path and rollback decide without the network, and a
   * publisher's withdrawal or constraint must hold for them too.
   */
  get metadataFile(): string {
    return join(this.dir, ".release-metadata.json");
  }

  /** Held for the length of a pass (src/store/lock.ts). */
  get lockFile(): string {
    return join(this.dir, ".lock");
  }

  pathOf(file: string): string {
    return join(this.dir, file);
  }

  async ensure(): Promise<void> {
    mkdirSync(this.incomingDir, { recursive: true, mode: 0o700 });
  }

  /** Every complete image with its record; images without a record (foreign files) are ignored. */
  async list(): Promise<StoredImage[]> {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const images: StoredImage[] = [];
    for (const file of names) {
      if (file.startsWith(".") || !file.endsWith(".raw")) continue;
      const record = await this.record(file);
      if (record !== null) images.push({ ...record, path: this.pathOf(file) });
    }
    return images;
  }

  async get(file: string): Promise<StoredImage | null> {
    const record = await this.record(file);
    if (record === null) return null;
    try {
      statSync(this.pathOf(file));
    } catch {
      return null;
    }
    return { ...record, path: this.pathOf(file) };
  }

  private async record(file: string): Promise<ImageRecord | null> {
    try {
      const parsed = JSON.parse(readFileSync(this.pathOf(file + RECORD_SUFFIX), "utf8")) as ImageRecord;
      if (parsed.file !== file) return null;
      // Lists added after the first records were written: an older record lists nothing rather than crashing.
      return { ...parsed, files: parsed.files ?? [], kataConfigs: parsed.kataConfigs ?? [] };
    } catch {
      return null;
    }
  }

  /** Moves a verified, inspected image from incoming/ into the store: record first, then the image. */
  async admit(incomingPath: string, record: ImageRecord): Promise<StoredImage> {
    const dest = this.pathOf(record.file);
    await writeFileAtomic(dest + RECORD_SUFFIX, `${JSON.stringify(record, null, 2)}\n`);
    await rename(incomingPath, dest);
    await fsyncDir(this.dir);
    return { ...record, path: dest };
  }

  /**
   * Keeps a failed image aside for inspection instead of deleting it; it is never linked. `<file>.reason` says why
   * and names the image's digest: it stays when the image itself is pruned (pruneQuarantine), so the same bytes
   * are never fetched again, while a republished file under the same name (another digest) gets a fresh look.
   */
  async quarantine(path: string, file: string, sha256: string, why: string): Promise<string> {
    await mkdir(this.quarantineDir, { recursive: true, mode: 0o700 });
    const dest = join(this.quarantineDir, file);
    // The marker first: a crash between the two leaves a marker without an image, never an image nobody explains.
    // The reasons name the file where it was inspected (.incoming/); the marker names where it is now.
    const reason = why.replaceAll(path, dest);
    await writeFileAtomic(`${dest}${REASON_SUFFIX}`, `image: ${dest}\nsha256: ${sha256}\n\n${reason}\n`);
    await rename(path, dest);
    await fsyncDir(this.quarantineDir);
    return dest;
  }

  /**
   * Whether this published image (name and digest) failed inspection before. A marker without a digest line (or
   * an image without a marker) blocks the name whatever its digest.
   */
  async isQuarantined(file: string, sha256: string): Promise<boolean> {
    const marker = join(this.quarantineDir, `${file}${REASON_SUFFIX}`);
    let text: string;
    try {
      text = await readFile(marker, "utf8");
    } catch {
      return existsSync(join(this.quarantineDir, file));
    }
    const recorded = /^sha256: ([0-9a-f]{64})$/m.exec(text)?.[1];
    return recorded === undefined || recorded === sha256.toLowerCase();
  }

  /** Forgets a quarantined image once a different image under its name passed inspection. */
  async clearQuarantine(file: string): Promise<void> {
    await rm(join(this.quarantineDir, file), { force: true });
    await rm(join(this.quarantineDir, `${file}${REASON_SUFFIX}`), { force: true });
  }

  /**
   * Deletes quarantined images beyond the `keep` newest (each can be hundreds of MiB, and a source that keeps
   * publishing bad images would otherwise fill /var); their markers stay. Returns the removed image paths.
   */
  async pruneQuarantine(keep = QUARANTINE_KEEP_IMAGES): Promise<string[]> {
    let names: string[];
    try {
      names = readdirSync(this.quarantineDir);
    } catch {
      return [];
    }
    const images = await Promise.all(
      names
        .filter((name) => name.endsWith(".raw"))
        .map(async (name) => {
          const path = join(this.quarantineDir, name);
          // When it was quarantined: the marker's time (the image keeps its download's mtime across the rename).
          const when = await stat(`${path}${REASON_SUFFIX}`)
            .catch(() => stat(path))
            .then((st) => st.mtimeMs)
            .catch(() => 0);
          return { path, when };
        }),
    );
    const removed: string[] = [];
    for (const { path } of images.sort((a, b) => b.when - a.when).slice(keep)) {
      await rm(path, { force: true });
      removed.push(path);
    }
    return removed;
  }

  /** Deletes an image and then its record (the reverse of admit, so a crash never orphans an image). */
  async remove(file: string): Promise<void> {
    if (file.includes("/")) throw new KataError("store-failed", `refusing to remove "${file}": not a store file name`);
    await removeDurably(this.pathOf(file));
    await removeDurably(this.pathOf(file + RECORD_SUFFIX));
  }

  /**
   * Removes records whose image is gone, leftovers of interrupted writes, and complete downloads that a crash
   * left in incoming/ between verification and admission (they are fetched and verified again).
   */
  async sweep(): Promise<void> {
    for (const name of listing(this.incomingDir)) {
      if (!name.endsWith(".partial")) await rm(join(this.incomingDir, name), { force: true, recursive: true });
    }
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return;
    }
    const present = new Set(names);
    for (const name of names) {
      if (name.endsWith(`.raw${RECORD_SUFFIX}`) && !present.has(name.slice(0, -RECORD_SUFFIX.length))) {
        await rm(this.pathOf(name), { force: true });
      } else if (name.startsWith(".") && name.endsWith(".tmp")) {
        await rm(this.pathOf(name), { force: true });
      }
    }
  }
}
