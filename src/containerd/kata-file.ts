// A Kata configuration as Kata itself reads it (katautils.decodeDropIns in the Go runtime, config/drop_in.rs in
// runtime-rs): the file, with symlinks resolved, then every entry of the `config.d/` directory beside the resolved
// file, in file name order, each merged over the result table by table (a table merges key by key, any other
// value replaces). An entry that is not a regular file, or not TOML, makes Kata refuse to start: so do we.
import { readdir, readFile, stat } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { parse, TomlError } from "smol-toml";
import { resolveUnderRoot } from "../paths.ts";
import { isTable, type Table } from "./schema.ts";

export interface KataFile {
  /** The merged document. */
  doc: Table;
  /** Every file read, as paths inside the tree: the configuration first, then its drop-ins in order. */
  files: string[];
}

/** Merges `over` into `base` in place, as Kata merges a drop-in. */
export function mergeDropIn(base: Table, over: Table): Table {
  for (const [key, value] of Object.entries(over)) {
    const current = base[key];
    if (isTable(value) && isTable(current)) mergeDropIn(current, value);
    else base[key] = value;
  }
  return base;
}

/** A problem with one file, worded "path:line: message" so the operator can go straight to it. */
export class KataFileError extends Error {}

async function parseFile(onDisk: string, shown: string): Promise<Table> {
  let text: string;
  try {
    text = await readFile(onDisk, "utf8");
  } catch (err) {
    throw new KataFileError(`${shown}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return parse(text) as Table;
  } catch (err) {
    const where = err instanceof TomlError ? `${shown}:${err.line}` : shown;
    throw new KataFileError(`${where}: not valid TOML: ${(err as Error).message.split("\n")[0]}`);
  }
}

/**
 * Reads `path` (absolute inside `treeRoot`) and its drop-ins. Throws ENOENT-coded errors for a missing file,
 * KataFileError for everything Kata would refuse.
 */
export async function readKataFile(treeRoot: string, path: string): Promise<KataFile> {
  const resolved = await resolveUnderRoot(treeRoot, path);
  const inTree = (p: string) => `/${relative(treeRoot, p)}`;
  const doc = await parseFile(resolved, path);
  const files = [path];
  const dropInDir = join(dirname(resolved), "config.d");
  let entries: string[];
  try {
    entries = (await readdir(dropInDir)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { doc, files };
    throw new KataFileError(`${inTree(dropInDir)}: ${(err as NodeJS.ErrnoException).code}`);
  }
  for (const entry of entries) {
    const onDisk = join(dropInDir, entry);
    const shown = inTree(onDisk);
    if (
      !(await stat(onDisk).then(
        (s) => s.isFile(),
        () => false,
      ))
    ) {
      throw new KataFileError(`${shown}: a drop-in must be a regular file (or a symlink to one)`);
    }
    mergeDropIn(doc, await parseFile(onDisk, shown));
    files.push(shown);
  }
  return { doc, files };
}
