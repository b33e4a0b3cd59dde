// The reboot sentinel: the file a cluster's reboot coordinator watches (kured: /run/reboot-required, the file
// Debian's and Ubuntu's packages write too). Its existence asks for a reboot, so it is shared: kata-sysextd only
// ever removes a sentinel it wrote itself. A marker in its state directory remembers what it wrote where; it lives
// on /var, never shorter than a sentinel on /run, so a reboot can only leave a marker without its file (forgotten
// at the next look), never one of our files without its marker (which nothing would remove: a reboot loop).
import { readSmallFile } from "../files.ts";
import { createFileExclusive, removeDurably, writeFileAtomic } from "../store/fsutil.ts";

/** A sentinel and our marker are a line or two; a file far larger is not one we wrote. */
const SENTINEL_MAX_BYTES = 64 * 1024;

/** Who the sentinel that carries a request belongs to: written by us, or found there (another package asked too). */
export type SentinelOwner = "kata-sysextd" | "other";

export interface SentinelInput {
  /** The line the sentinel should hold, or null when kata-sysextd asks for no reboot. */
  desired: string | null;
  /** The sentinel's content, or null when there is no such file. */
  found: string | null;
  /** Contents the marker says we wrote there (two while one of ours is being replaced). */
  ours: readonly string[];
}

export type SentinelAction =
  /** Already as desired. */
  | { kind: "none"; owner: SentinelOwner | null }
  /** No file: write ours. */
  | { kind: "create"; line: string }
  /** Ours, with another reason: replace it. */
  | { kind: "replace"; line: string; old: string }
  /** Ours, and no request any more: remove it. */
  | { kind: "remove" }
  /** Not ours: leave it; a request of ours rides on it. Our marker, if any, no longer describes the file. */
  | { kind: "foreign"; forget: boolean }
  /** The marker outlived our file (a reboot emptied /run, or someone removed it): forget the marker. */
  | { kind: "forget" };

/** What to do with the sentinel file. Pure; the table in test/unit/cluster/reboot-sentinel.test.ts. */
export function sentinelAction({ desired, found, ours }: SentinelInput): SentinelAction {
  const mine = found !== null && ours.includes(found);
  if (found === null) {
    if (desired !== null) return { kind: "create", line: desired };
    return ours.length > 0 ? { kind: "forget" } : { kind: "none", owner: null };
  }
  if (!mine) return ours.length > 0 ? { kind: "foreign", forget: true } : { kind: "none", owner: "other" };
  if (desired === null) return { kind: "remove" };
  if (found !== desired) return { kind: "replace", line: desired, old: found };
  // Ours and current; a marker still listing the line we replaced is tidied by rewriting it.
  return ours.length > 1 ? { kind: "replace", line: desired, old: found } : { kind: "none", owner: "kata-sysextd" };
}

interface Marker {
  /** The sentinel path as configured (host view, before --root). */
  sentinel: string;
  wrote: string[];
}

export interface SentinelFiles {
  /** The configured sentinel path (host view), or null when turned off. */
  sentinel: string | null;
  /** Resolves a host path under --root. */
  host(path: string): string;
  /** The ownership marker (already under --root). */
  marker: string;
}

/** Where the request stands after apply(): the sentinel that carries it and whose it is. */
export type SentinelOutcome = { path: string; owner: SentinelOwner } | null;

/** The sentinel line for a reason: one line, kata-sysextd's name first. */
export function sentinelLine(reason: string): string {
  return `kata-sysextd: ${reason.replace(/\s+/g, " ").trim()}\n`;
}

export class RebootSentinel {
  private readonly files: SentinelFiles;

  constructor(files: SentinelFiles) {
    this.files = files;
  }

  /** The configured path, or null when the sentinel is turned off. */
  get path(): string | null {
    return this.files.sentinel;
  }

  /**
   * Brings the sentinel to `line` (ask for a reboot) or to no request of ours (null), never touching a file
   * another package wrote. A sentinel we wrote at a path configured before is withdrawn first.
   */
  async apply(line: string | null): Promise<SentinelOutcome> {
    const marker = await this.readMarker();
    if (marker !== null && marker.sentinel !== this.files.sentinel) {
      await this.carryOut(marker.sentinel, marker, null);
    }
    const path = this.files.sentinel;
    if (path === null) return null;
    const ours = marker?.sentinel === path ? marker : null;
    return this.carryOut(path, ours, line);
  }

  /** Whether the configured sentinel exists and is one we wrote (for the file watch: our own write is no news). */
  async isOurs(): Promise<boolean> {
    const path = this.files.sentinel;
    if (path === null) return false;
    const [marker, found] = await Promise.all([this.readMarker(), this.read(path)]);
    return marker?.sentinel === path && found !== null && marker.wrote.includes(found);
  }

  private async carryOut(path: string, marker: Marker | null, line: string | null): Promise<SentinelOutcome> {
    const action = sentinelAction({ desired: line, found: await this.read(path), ours: marker?.wrote ?? [] });
    const file = this.files.host(path);
    switch (action.kind) {
      case "none":
        return line === null || action.owner === null ? null : { path, owner: action.owner };
      case "create": {
        // The marker first: a crash between the two leaves a marker without a file, never our file unclaimed.
        await this.writeMarker({ sentinel: path, wrote: [action.line] });
        if (await createFileExclusive(file, action.line)) return { path, owner: "kata-sysextd" };
        // Someone else's file appeared in between: theirs stands, and carries our request.
        await removeDurably(this.files.marker);
        return { path, owner: "other" };
      }
      case "replace":
        await this.writeMarker({ sentinel: path, wrote: [action.old, action.line] });
        await writeFileAtomic(file, action.line);
        await this.writeMarker({ sentinel: path, wrote: [action.line] });
        return { path, owner: "kata-sysextd" };
      case "remove":
        // Judged on a read just above: a file another package writes over ours between that read and this unlink
        // would go too. No protocol closes that window for a writer that is not us; it is a few microseconds.
        await removeDurably(file);
        await removeDurably(this.files.marker);
        return null;
      case "foreign":
        if (action.forget) await removeDurably(this.files.marker);
        return line === null ? null : { path, owner: "other" };
      case "forget":
        await removeDurably(this.files.marker);
        return null;
    }
  }

  private async read(path: string): Promise<string | null> {
    const read = await readSmallFile(this.files.host(path), SENTINEL_MAX_BYTES);
    switch (read.kind) {
      case "ok":
        return read.text;
      case "missing":
        return null;
      // Unreadable (a directory, a FIFO, no permission): something is there, and it is not ours.
      case "unreadable":
        return read.code === "ENOTDIR" ? null : `unreadable: ${read.code ?? read.message}`;
      case "not-regular":
        return `unreadable: ${read.what}`;
      case "too-large":
        return `unreadable: larger than ${read.maxBytes} bytes`;
    }
  }

  private async readMarker(): Promise<Marker | null> {
    const read = await readSmallFile(this.files.marker, SENTINEL_MAX_BYTES);
    const text = read.kind === "ok" ? read.text : null;
    if (text === null) return null;
    try {
      const parsed = JSON.parse(text) as Partial<Marker>;
      if (typeof parsed.sentinel !== "string" || !Array.isArray(parsed.wrote)) return null;
      return { sentinel: parsed.sentinel, wrote: parsed.wrote.filter((w): w is string => typeof w === "string") };
    } catch {
      return null;
    }
  }

  private async writeMarker(marker: Marker): Promise<void> {
    await writeFileAtomic(this.files.marker, `${JSON.stringify(marker)}\n`);
  }
}
