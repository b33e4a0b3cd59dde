// `kata-sysextctl versions` as the Reconciler answers it (catalog.ts): a real release server on 127.0.0.1, real
// squashfs images, the store of a sandbox root after a real pass.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImage } from "../../helpers/images.ts";
import { reconcilerOn, unobservedSysext } from "../../helpers/reconciler.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import { makeSandboxRoot, writeConfig } from "../../helpers/sandbox.ts";

let pub: string;
let root: string;
let server: ReleaseServer;
let sumsPath: string;

beforeAll(async () => {
  pub = mkdtempSync(join(tmpdir(), "kata-pub-catalog-"));
  const images = ["3.30.0", "3.32.0"].map((version) => ({
    version,
    content: buildImage({ version }, join(pub, "build", `${version}.raw`)),
  }));
  ({ sumsPath } = await publishRelease(pub, { images }));
  server = await startReleaseServer(pub);
  root = makeSandboxRoot();
  writeConfig(root, `[source]\nurl = "${server.url}"\n[containerd]\nenabled = false\n[policy]\nversions = "<3.31"\n`);
  const pass = await (await reconcilerOn(root, { sysext: unobservedSysext(), preflight: null })).run({
    kind: "reconcile",
  });
  expect(pass.result, pass.error?.message).toBe("ok");
});

afterAll(async () => {
  await server?.close();
  for (const dir of [pub, root]) if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("versions", () => {
  it("lists what is stored and what is published, each judged as a pass would", async () => {
    const versions = await (await reconcilerOn(root, { sysext: unobservedSysext(), preflight: null })).versions();
    expect(versions).toMatchObject({ name: "kata-containers", active: "3.30.0", remoteError: null });
    expect(versions.local.map((l) => [l.version, l.active])).toEqual([["3.30.0", true]]);
    expect(versions.remote.map((r) => r.version).sort()).toEqual(["3.30.0", "3.32.0"]);
  });

  it("says what is wrong when the source serves junk instead of SHA256SUMS, as a pass does", async () => {
    const sums = readFileSync(sumsPath, "utf8");
    writeFileSync(sumsPath, "<!DOCTYPE html>\n<html><body>Not the release</body></html>\n");
    try {
      const versions = await (await reconcilerOn(root, { sysext: unobservedSysext(), preflight: null })).versions();
      expect(versions.remote).toEqual([]);
      expect(versions.remoteError?.code).toBe("manifest-invalid");
      expect(versions.remoteError?.remedy).toContain("HTML");
      expect(versions.local.map((l) => l.version)).toEqual(["3.30.0"]);
    } finally {
      writeFileSync(sumsPath, sums);
    }
  });
});
