// The real daemon's very first /status answers, taken while its first pass still waits for a stalled release
// server: the host section is already filled from the os-release read at start.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { freePort } from "../../helpers/net.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../../helpers/release-server.ts";
import { makeSandboxRoot, type RunningDaemon, startDaemon, writeConfig } from "../../helpers/sandbox.ts";

let server: ReleaseServer | undefined;
let daemon: RunningDaemon | undefined;
const dirs: string[] = [];

afterAll(async () => {
  await daemon?.stop();
  await server?.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

it("/status names the host from its first answer, before the first pass has ended", async () => {
  const pub = mkdtempSync(join(tmpdir(), "kata-pub-first-"));
  dirs.push(pub);
  await publishRelease(pub, { images: [] });
  server = await startReleaseServer(pub);
  server.setFault("/kata-containers/SHA256SUMS", { kind: "stall" });
  const root = makeSandboxRoot();
  dirs.push(root);
  const port = await freePort();
  writeConfig(
    root,
    `[source]\nurl = "${server.url}"\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`,
  );
  daemon = startDaemon(root);
  let first: { host: unknown; lastReconcile: unknown } | null = null;
  for (let i = 0; i < 2000 && first === null; i++) {
    first = await fetch(`http://127.0.0.1:${port}/status`).then(
      async (res) => (await res.json()) as { host: unknown; lastReconcile: unknown },
      () => null,
    );
    if (first === null) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  expect(first, daemon.stderr()).not.toBeNull();
  expect(first?.lastReconcile).toBeNull();
  expect(first?.host).toEqual({ id: "flatcar", versionId: "4593.2.5", sysextLevel: "1.0", arch: "x86-64" });
}, 60_000);
