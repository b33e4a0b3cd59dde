// bin/kata-sysextd.js runs the one-shot commands from the bundle's script form (scripts/bundle.ts), compiled
// with a V8 code cache it makes after the run and keeps in Node's compile cache folder, named by the script's
// SHA-256. The other commands import the split bundle, which Node's own compile cache serves.
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { skipWithout, unless } from "../../helpers/needs.ts";
import { DAEMON, makeSandboxRoot, NODE, PROJECT, runArgv } from "../../helpers/sandbox.ts";

const SCRIPT = join(PROJECT, "build/bundle/kata-sysextd.cjs");

/** Whether bin/ runs the bundle (built by `npm ci`, and still of these sources) rather than the sources. */
async function bundleIsCurrent(): Promise<boolean> {
  const entry = pathToFileURL(join(PROJECT, "bin/entry.js")).href;
  const code = `import(${JSON.stringify(entry)}).then((m) => console.log(m.entry("kata-sysextd", "src/cli/daemon.ts")))`;
  return (await runArgv([NODE, "--input-type=module", "-e", code])).stdout.includes("/build/bundle/");
}

const skip = skipWithout(
  unless(await bundleIsCurrent(), "build/bundle/ is not of these sources: run `npm run bundle`"),
  "the script form's tests",
);

/** The code caches the script form left under a compile cache folder (Node keeps its own in a subfolder). */
function scriptCaches(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((name) => name.endsWith(".v8cache"))
    .map((name) => join(dir, name));
}

describe.skipIf(skip)("the one-shot script form", () => {
  const root = makeSandboxRoot();
  const boot = (cache: string) =>
    runArgv([NODE, DAEMON, "boot", "--root", root], { env: { NODE_COMPILE_CACHE: cache } });

  it("boot runs from it; its code cache, made after the run and named by the script's digest, serves the next", async () => {
    const cache = mkdtempSync(join(tmpdir(), "kata-compile-cache-"));
    const first = await boot(cache);
    expect(first.code, first.stderr).toBe(0);
    const [file, ...more] = scriptCaches(cache);
    expect(more).toEqual([]);
    const text = readFileSync(SCRIPT, "latin1");
    const header = `//${createHash("sha256")
      .update(text.slice(text.indexOf("\n") + 1), "latin1")
      .digest("hex")}\n`;
    expect(text.startsWith(header)).toBe(true);
    expect(file).toMatch(new RegExp(`/kata-sysextd-${header.slice(2, -1)}\\.v8cache$`));

    const made = statSync(file ?? "");
    const second = await boot(cache);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toBe(first.stderr);
    // Taken as it was, not made again.
    expect(statSync(file ?? "")).toMatchObject({ ino: made.ino, mtimeMs: made.mtimeMs });
  });

  it("a cache V8 refuses costs nothing but time: the command runs, and the cache is made anew", async () => {
    const cache = mkdtempSync(join(tmpdir(), "kata-compile-cache-"));
    const clean = await boot(cache);
    const [file] = scriptCaches(cache);
    const garbage = Buffer.alloc(statSync(file ?? "").size, 0x5a);
    writeFileSync(file ?? "", garbage);
    const again = await boot(cache);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toBe(clean.stderr);
    expect(readFileSync(file ?? "").equals(garbage)).toBe(false);
  });

  it("a new build's cache replaces those of earlier builds, and leaves other commands' alone", async () => {
    const cache = mkdtempSync(join(tmpdir(), "kata-compile-cache-"));
    expect((await boot(cache)).code).toBe(0);
    const [file] = scriptCaches(cache);
    const dir = dirname(file ?? "");
    const earlier = join(dir, `kata-sysextd-${"0".repeat(64)}.v8cache`);
    const other = join(dir, `kata-sysextctl-${"0".repeat(64)}.v8cache`);
    writeFileSync(earlier, "a cache of an earlier build");
    writeFileSync(other, "another command's");
    writeFileSync(file ?? "", "refused by V8: this run writes the cache anew"); // as after an upgrade
    expect((await boot(cache)).code).toBe(0);
    expect(scriptCaches(cache).sort()).toEqual([file, other].sort());
  });

  it("other commands do not run it", async () => {
    const cache = mkdtempSync(join(tmpdir(), "kata-compile-cache-"));
    for (const argv of [["--version"], ["boot", "--help"], ["--root", root, "--once", "--bogus"]]) {
      const ran = await runArgv([NODE, DAEMON, ...argv], { env: { NODE_COMPILE_CACHE: cache } });
      expect(ran.code, argv.join(" ")).toBe(argv.includes("--bogus") ? 2 : 0);
    }
    expect(scriptCaches(cache)).toEqual([]);
  });
});
