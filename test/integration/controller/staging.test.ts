// Staging for an update's next Flatcar release (what the daemon does on UPDATED_NEED_REBOOT), against a real
// release server on 127.0.0.1, real squashfs images and a sandbox root: every stored image is judged against the
// release it is staged for, not the running one.
import { mkdtempSync, readlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Reconciler } from "../../../src/controller/reconciler.ts";
import { hostPaths } from "../../../src/paths.ts";
import { hostAfterUpdate, readHostReleaseUnder } from "../../../src/release/os-release.ts";
import { acquireLock } from "../../../src/store/lock.ts";
import { buildImage, flatcarRelease } from "../../helpers/images.ts";
import { reconcilerOn, unobservedSysext } from "../../helpers/reconciler.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import { makeSandboxRoot, writeConfig } from "../../helpers/sandbox.ts";

const LINK = "etc/extensions/kata-containers.raw";

let server: ReleaseServer;

beforeAll(async () => {
  const pub = mkdtempSync(join(tmpdir(), "kata-pub-staging-"));
  const image = (version: string, release: string) => ({
    version,
    content: buildImage({ version, extensionRelease: flatcarRelease(release) }, join(pub, "build", `${version}.raw`)),
  });
  await publishRelease(pub, { images: [image("3.32.0", "4593.2.5"), image("3.33.0", "4650.0.0")] });
  server = await startReleaseServer(pub);
});
afterAll(async () => server?.close());

function reconcilerFor(root: string): Promise<Reconciler> {
  writeConfig(root, `[source]\nurl = "${server.url}"\n[containerd]\nenabled = false\n`);
  return reconcilerOn(root, { sysext: unobservedSysext() });
}

describe("staging for the next release", () => {
  it("stages the stored image that matches the next release, not the one active now", async () => {
    const root = makeSandboxRoot("4593.2.5");
    const reconciler = await reconcilerFor(root);
    // The pass on 4593.2.5 links 3.32.0 and keeps 3.33.0 (made for 4650.0.0) in the store.
    expect((await reconciler.run({ kind: "reconcile" })).result).toBe("ok");
    expect(readlinkSync(join(root, LINK))).toContain("3.32.0");
    const fetched = server.requests.filter((r) => r.path.endsWith(".raw")).length;

    const next = hostAfterUpdate(await readHostReleaseUnder(hostPaths(root).root), "4650.0.0");
    const staged = await reconciler.fetchForRelease(next);
    expect(staged.images.map((i) => i.file)).toEqual(["kata-containers-3.33.0-x86-64.raw"]);
    expect(server.requests.filter((r) => r.path.endsWith(".raw")).length).toBe(fetched); // already stored
    expect(readlinkSync(join(root, LINK))).toContain("3.32.0"); // staging links nothing
  });

  it("records what it staged while it still holds the store lock, so no pass can prune it first", async () => {
    const root = makeSandboxRoot("4593.2.5");
    const reconciler = await reconcilerFor(root);
    expect((await reconciler.run({ kind: "reconcile" })).result).toBe("ok");
    const next = hostAfterUpdate(await readHostReleaseUnder(hostPaths(root).root), "4650.0.0");
    const tried: string[] = [];
    await reconciler.fetchForRelease(next, async (staged) => {
      tried.push(staged.images.map((i) => i.file).join(","));
      // A hand-run `kata-sysextd --once` now would be turned away, as this lock attempt is.
      const error = await acquireLock(join(hostPaths(root).storeDir, ".lock")).then(
        (lock) => lock.release().then(() => null),
        (err: unknown) => err,
      );
      tried.push(error instanceof Error ? error.message : "lock was free");
    });
    expect(tried).toEqual([
      "kata-containers-3.33.0-x86-64.raw",
      expect.stringMatching(/another kata-sysextd pass is running/),
    ]);
    // And once it returned, the lock is free again.
    await (await acquireLock(join(hostPaths(root).storeDir, ".lock"))).release();
  });

  it("refuses to stage when nothing published matches the next release", async () => {
    const root = makeSandboxRoot("4593.2.5");
    const reconciler = await reconcilerFor(root);
    expect((await reconciler.run({ kind: "reconcile" })).result).toBe("ok");
    const next = hostAfterUpdate(await readHostReleaseUnder(hostPaths(root).root), "4700.0.0");
    await expect(reconciler.fetchForRelease(next)).rejects.toThrow(
      /no acceptable Kata version|no Kata version matches/,
    );
  });
});
