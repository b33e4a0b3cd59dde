// The shape the code keeps, read off its own imports: no module reaches itself through its imports, the adapters
// and the parsers below the controller never import it, and only src/main/ and src/daemon/ wire adapters together.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = resolve(import.meta.dirname, "../../src");

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** Each module's relative imports (static, type-only and dynamic alike), as paths under src/. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sources(SRC)) {
    const text = readFileSync(file, "utf8");
    const specifiers = [...text.matchAll(/(?:from|import\()\s*"(\.{1,2}\/[^"]+)"/g)].map((m) => m[1] ?? "");
    graph.set(
      relative(SRC, file),
      specifiers.map((s) => relative(SRC, resolve(dirname(file), s))),
    );
  }
  return graph;
}

/** Every cycle, each as the path that closes it. */
function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const done = new Set<string>();
  const visit = (node: string, path: string[]) => {
    const at = path.indexOf(node);
    if (at >= 0) {
      found.push([...path.slice(at), node]);
      return;
    }
    if (done.has(node)) return;
    for (const next of graph.get(node) ?? []) visit(next, [...path, node]);
    done.add(node);
  };
  for (const node of graph.keys()) visit(node, []);
  return found;
}

const folder = (module: string) => module.split("/")[0] ?? "";

/** Folders that talk to one outside thing or parse one format: they serve the controller, never the reverse. */
const BELOW_CONTROLLER = [
  "api",
  "canary",
  "cluster",
  "config",
  "containerd",
  "delivery",
  "elf",
  "fetch",
  "log",
  "preflight",
  "release",
  "store",
  "sysext",
  "systemd",
];

describe("the import graph of src/", () => {
  const graph = importGraph();

  it("has the modules it is read from", () => {
    expect(graph.get("controller/reconciler.ts")).toContain("controller/plan.ts");
    expect(graph.size).toBeGreaterThan(100);
  });

  it("has no cycle", () => {
    expect(cycles(graph).map((c) => c.join(" -> "))).toEqual([]);
  });

  it("finds a cycle when there is one", () => {
    const looped = new Map([
      ["a.ts", ["b.ts"]],
      ["b.ts", ["c.ts"]],
      ["c.ts", ["a.ts"]],
    ]);
    expect(cycles(looped)).toEqual([["a.ts", "b.ts", "c.ts", "a.ts"]]);
  });

  it.each(BELOW_CONTROLLER)("%s/ imports neither the controller nor the wiring", (below) => {
    const upward = [...graph]
      .filter(([module]) => folder(module) === below)
      .flatMap(([module, imports]) =>
        imports
          .filter((i) => ["controller", "daemon", "main", "cli"].includes(folder(i)))
          .map((i) => `${module} -> ${i}`),
      );
    expect(upward).toEqual([]);
  });

  it("controller/ imports no wiring (main/, daemon/, cli/)", () => {
    const wiring = [...graph]
      .filter(([module]) => folder(module) === "controller")
      .flatMap(([module, imports]) =>
        imports.filter((i) => ["daemon", "main", "cli"].includes(folder(i))).map((i) => `${module} -> ${i}`),
      );
    expect(wiring).toEqual([]);
  });
});
