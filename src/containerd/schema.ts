// Where a containerd configuration keeps what we touch, by its `version` (containerd's docs/PLUGINS.md and
// docs/cri/config.md): version 3 (containerd 2.x) has the CRI runtimes under the "io.containerd.cri.v1.runtime"
// plugin, version 2 (containerd 1.3+) under "io.containerd.grpc.v1.cri", and a file without `version` is version 1,
// whose plugins go by their short IDs ("cri"). Each file is written back in its own schema; containerd 2.x
// migrates 1 and 2 on load, containerd 1.x cannot read 3.
import { parse } from "smol-toml";

export type ConfigVersion = 1 | 2 | 3;

export type Table = Record<string, unknown>;
export const isTable = (v: unknown): v is Table => typeof v === "object" && v !== null && !Array.isArray(v);

export interface Schema {
  version: ConfigVersion;
  /** Key path from the document root to the CRI runtimes table. */
  runtimes: readonly string[];
  /** Key path to the devmapper snapshotter plugin's table. */
  devmapper: readonly string[];
}

const SCHEMAS: Record<ConfigVersion, Schema> = {
  1: { version: 1, runtimes: ["plugins", "cri", "containerd", "runtimes"], devmapper: ["plugins", "devmapper"] },
  2: {
    version: 2,
    runtimes: ["plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes"],
    devmapper: ["plugins", "io.containerd.snapshotter.v1.devmapper"],
  },
  3: {
    version: 3,
    runtimes: ["plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes"],
    devmapper: ["plugins", "io.containerd.snapshotter.v1.devmapper"],
  },
};

/** The schema of a parsed configuration, or a sentence saying why it has none we know. */
export function schemaOf(doc: Table): Schema | string {
  const version = doc.version;
  if (version === undefined) return SCHEMAS[1];
  const n = typeof version === "bigint" ? Number(version) : version;
  if (n === 1 || n === 2 || n === 3) return SCHEMAS[n];
  return `containerd config version ${JSON.stringify(typeof version === "bigint" ? n : version)} is none of 1 (no version), 2 or 3`;
}

/** The table at `path`, or undefined when any step is missing or not a table. */
export function lookup(doc: Table, path: readonly string[]): Table | undefined {
  let at: unknown = doc;
  for (const key of path) {
    if (!isTable(at)) return undefined;
    at = at[key];
  }
  return isTable(at) ? at : undefined;
}

/** The table at `path`, created (with every missing parent) when absent; throws when a step is not a table. */
export function ensureTable(doc: Table, path: readonly string[]): Table {
  let at = doc;
  for (const [i, key] of path.entries()) {
    const next = at[key];
    if (next === undefined) at[key] = {};
    else if (!isTable(next)) {
      throw new Error(`${path.slice(0, i + 1).join(".")} is a ${typeof next}, not a table`);
    }
    at = at[key] as Table;
  }
  return at;
}

/** devmapperConfigured for a file's text; false for text that is not a configuration (reported elsewhere). */
export function devmapperIn(text: string): boolean {
  let doc: Table;
  try {
    doc = parse(text) as Table;
  } catch {
    return false;
  }
  const schema = schemaOf(doc);
  return typeof schema !== "string" && devmapperConfigured(doc, schema);
}

/** A devmapper snapshotter is configured when its plugin table names a pool (containerd refuses it without one). */
export function devmapperConfigured(doc: Table, schema: Schema): boolean {
  const pool = lookup(doc, schema.devmapper)?.pool_name;
  return typeof pool === "string" && pool !== "";
}
