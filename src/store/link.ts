// The active link /etc/extensions/<name>.raw -> the store. Only ever replaced atomically (replaceSymlink), so
// systemd-sysext sees the old image or the new one, never a missing link in between.
import { lstatSync, readlinkSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { basename, dirname, relative, resolve } from "node:path";
import { KataError } from "../errors.ts";
import { listing } from "../files.ts";
import { fileNameProblem } from "../release/names.ts";
import { removeDurably, replaceSymlink } from "./fsutil.ts";

export type LinkState =
  | { kind: "absent" }
  | { kind: "store"; file: string; target: string }
  /**
   * Something else is there: a regular file, or a link outside our store. We never overwrite it silently.
   * `target` is what a link says (readlink), so a bakery-style link can be taken over.
   */
  | { kind: "foreign"; detail: string; target: string | null };

/** The store file a link names, or null when it names none (absent, or something that is not ours). */
export function activeFile(link: LinkState): string | null {
  return link.kind === "store" ? link.file : null;
}

export class ActiveLink {
  readonly path: string;
  readonly storeDir: string;

  constructor(path: string, storeDir: string) {
    this.path = path;
    this.storeDir = storeDir;
  }

  async read(): Promise<LinkState> {
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { kind: "absent" };
      throw err;
    }
    if (!st.isSymbolicLink()) return { kind: "foreign", detail: `${this.path} is not a symlink`, target: null };
    const target = readlinkSync(this.path);
    const absolute = resolve(dirname(this.path), target);
    if (dirname(absolute) !== resolve(this.storeDir)) {
      return { kind: "foreign", detail: `${this.path} points outside the store, at ${target}`, target };
    }
    return { kind: "store", file: basename(absolute), target };
  }

  /**
   * Points the link at a store image. The target is relative (../../var/lib/...), so it resolves the same on
   * the host and under --root.
   */
  async point(file: string): Promise<void> {
    // The name may come from state.json: whatever it says, the link never leaves the store.
    const problem = fileNameProblem(file);
    if (problem !== null) {
      throw new KataError("store-failed", `refusing to point ${this.path} at ${JSON.stringify(file)}: it ${problem}`, {
        remedy:
          "the name did not come from the store; run `kata-sysextctl refresh` to decide again from what is stored",
      });
    }
    await mkdir(dirname(this.path), { recursive: true });
    await replaceSymlink(this.path, relative(dirname(this.path), resolve(this.storeDir, file)));
  }

  async remove(): Promise<void> {
    await removeDurably(this.path);
  }

  /**
   * Removes the temporary links a process killed inside replaceSymlink left next to ours (`.<name>.raw.<pid>.new`).
   * Only under the store lock: then nobody else is between its symlink and its rename. Returns what it removed.
   */
  async sweep(): Promise<string[]> {
    const prefix = `.${basename(this.path)}.`;
    const names = listing(dirname(this.path));
    const stale = names.filter((n) => n.startsWith(prefix) && /^\d+\.new$/.test(n.slice(prefix.length)));
    for (const name of stale) await rm(resolve(dirname(this.path), name), { force: true });
    return stale;
  }
}
