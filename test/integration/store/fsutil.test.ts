// The crash-safe write primitive on a real directory: writes of one path that overlap in time.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { createFileExclusive, writeFileAtomic } from "../../../src/store/fsutil.ts";

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

test("an exclusive create writes a file that is absent, never replaces one that is there, and leaves no temp file", async () => {
  const path = join(dir, "reboot-required");
  expect(await createFileExclusive(path, "ours\n")).toBe(true);
  expect(readFileSync(path, "utf8")).toBe("ours\n");
  writeFileSync(path, "another package's\n");
  expect(await createFileExclusive(path, "ours again\n")).toBe(false);
  expect(readFileSync(path, "utf8")).toBe("another package's\n");
  expect(readdirSync(dir)).toEqual(["reboot-required"]);
});
