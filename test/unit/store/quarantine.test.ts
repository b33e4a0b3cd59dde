// The quarantine on a real file system: digest-keyed markers, and the bound on the images it keeps.
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ImageStore, QUARANTINE_KEEP_IMAGES } from "../../../src/store/store.ts";

let dir: string;
let store: ImageStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "kata-quarantine-"));
  store = new ImageStore(join(dir, "images"), join(dir, "quarantine"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const sha = (text: string) => createHash("sha256").update(text).digest("hex");

/** Quarantines a file of that name holding `content`; returns its digest. */
async function quarantine(file: string, content: string, why = "ID=ubuntu does not match the host"): Promise<string> {
  await store.ensure();
  const incoming = join(store.incomingDir, file);
  writeFileSync(incoming, content);
  await store.quarantine(incoming, file, sha(content), why);
  return sha(content);
}

describe("quarantine", () => {
  it("blocks the same bytes again and gives other bytes under the same name a fresh look", async () => {
    const digest = await quarantine("kata-containers-3.40.0-x86-64.raw", "bad bytes");
    expect(await store.isQuarantined("kata-containers-3.40.0-x86-64.raw", digest)).toBe(true);
    expect(await store.isQuarantined("kata-containers-3.40.0-x86-64.raw", digest.toUpperCase())).toBe(true);
    expect(await store.isQuarantined("kata-containers-3.40.0-x86-64.raw", sha("republished"))).toBe(false);
    expect(await store.isQuarantined("kata-containers-3.41.0-x86-64.raw", digest)).toBe(false);
    const reason = readFileSync(join(dir, "quarantine", "kata-containers-3.40.0-x86-64.raw.reason"), "utf8");
    const now = join(dir, "quarantine", "kata-containers-3.40.0-x86-64.raw");
    expect(reason).toBe(`image: ${now}\nsha256: ${digest}\n\nID=ubuntu does not match the host\n`);
    expect(readdirSync(store.incomingDir)).toEqual([]);
  });

  it("names where the image is now, not the .incoming/ path it was inspected at", async () => {
    const incoming = join(store.incomingDir, "kata-containers-3.42.0-x86-64.raw");
    await quarantine("kata-containers-3.42.0-x86-64.raw", "bytes", `${incoming}: ships device nodes (/usr/lib/x)`);
    const reason = readFileSync(join(dir, "quarantine", "kata-containers-3.42.0-x86-64.raw.reason"), "utf8");
    const now = join(dir, "quarantine", "kata-containers-3.42.0-x86-64.raw");
    expect(reason).toContain(`${now}: ships device nodes (/usr/lib/x)`);
    expect(reason).not.toContain(".incoming");
  });

  it("blocks by name when the marker names no digest (older daemons wrote only the reason)", async () => {
    await quarantine("kata-containers-3.40.0-x86-64.raw", "bad bytes");
    writeFileSync(join(dir, "quarantine", "kata-containers-3.40.0-x86-64.raw.reason"), "ID=ubuntu\n");
    expect(await store.isQuarantined("kata-containers-3.40.0-x86-64.raw", sha("anything"))).toBe(true);
    // An image with its marker lost (removed by hand) still blocks its name.
    rmSync(join(dir, "quarantine", "kata-containers-3.40.0-x86-64.raw.reason"));
    expect(await store.isQuarantined("kata-containers-3.40.0-x86-64.raw", sha("anything"))).toBe(true);
  });

  it("keeps only the newest images, and every marker, so pruned bytes stay blocked", async () => {
    const versions = ["3.40.0", "3.41.0", "3.42.0", "3.43.0", "3.44.0"];
    const digests: string[] = [];
    for (const [i, version] of versions.entries()) {
      const file = `kata-containers-${version}-x86-64.raw`;
      digests.push(await quarantine(file, `bad ${version}`));
      // Quarantined a minute apart, oldest first; the image itself keeps an mtime that says otherwise.
      const when = new Date(Date.UTC(2026, 10, 26, 12, i));
      utimesSync(join(dir, "quarantine", `${file}.reason`), when, when);
      utimesSync(join(dir, "quarantine", file), new Date(0), new Date(0));
    }
    const removed = await store.pruneQuarantine();
    expect(removed.map((p) => p.split("/").at(-1)).sort()).toEqual([
      "kata-containers-3.40.0-x86-64.raw",
      "kata-containers-3.41.0-x86-64.raw",
      "kata-containers-3.42.0-x86-64.raw",
    ]);
    const left = readdirSync(join(dir, "quarantine")).sort();
    expect(left.filter((f) => f.endsWith(".raw"))).toEqual([
      "kata-containers-3.43.0-x86-64.raw",
      "kata-containers-3.44.0-x86-64.raw",
    ]);
    expect(left.filter((f) => f.endsWith(".reason"))).toHaveLength(versions.length);
    expect(QUARANTINE_KEEP_IMAGES).toBe(2);
    for (const [i, version] of versions.entries()) {
      expect(await store.isQuarantined(`kata-containers-${version}-x86-64.raw`, digests[i] ?? "")).toBe(true);
    }
    expect(await store.pruneQuarantine()).toEqual([]);
  });

  it("forgets a name once other bytes under it passed inspection", async () => {
    await quarantine("kata-containers-3.40.0-x86-64.raw", "bad bytes");
    await store.clearQuarantine("kata-containers-3.40.0-x86-64.raw");
    expect(existsSync(join(dir, "quarantine", "kata-containers-3.40.0-x86-64.raw"))).toBe(false);
    expect(await store.isQuarantined("kata-containers-3.40.0-x86-64.raw", sha("bad bytes"))).toBe(false);
  });

  it("prunes nothing when there is no quarantine yet", async () => {
    expect(await store.pruneQuarantine()).toEqual([]);
  });
});
