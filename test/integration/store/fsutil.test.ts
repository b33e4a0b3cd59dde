// The crash-safe write primitive on a real directory: writes of one path that overlap in time.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { writeFileAtomic } from "../../../src/store/fsutil.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "kata-fsutil-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test("overlapping writes of one path all complete, one of them wins whole, and no temp file stays", async () => {
  const path = join(dir, "state.json");
  const contents = Array.from({ length: 8 }, (_, i) => `${String(i).repeat(64 << 10)}\n`);
  await Promise.all(contents.map((c) => writeFileAtomic(path, c)));
  expect(contents).toContain(readFileSync(path, "utf8"));
  expect(readdirSync(dir)).toEqual(["state.json"]);
});
