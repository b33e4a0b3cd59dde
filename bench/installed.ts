// A sandbox root as a host looks after a successful first pass: one Kata image stored, verified and linked,
// published by a release server on 127.0.0.1 (the real daemon's --once put it there). Shared by the boot and
// idle benchmarks, which measure the commands with nothing left to do.
import { mkdtempSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildImage } from "../test/helpers/images.ts";
import { freePort } from "../test/helpers/net.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../test/helpers/release-server.ts";
import { daemonOnce, makeSandboxRoot, writeConfig } from "../test/helpers/sandbox.ts";

export interface InstalledRoot {
  root: string;
  /** The [api] listen port of the daemon's configuration. */
  port: number;
  /** Where the active link points now. */
  activeLink(): string;
  close(): Promise<void>;
}

export async function installedRoot(): Promise<InstalledRoot> {
  const pub = mkdtempSync(join(tmpdir(), "kata-bench-pub-"));
  let server: ReleaseServer | null = null;
  let root: string | null = null;
  try {
    await publishRelease(pub, {
      images: [{ version: "3.32.0", content: buildImage({ version: "3.32.0" }, join(pub, "3.32.0.raw")) }],
    });
    server = await startReleaseServer(pub);
    root = makeSandboxRoot();
    const port = await freePort();
    writeConfig(
      root,
      `[source]\nurl = "${server.url}"\n[api]\nlisten = "127.0.0.1:${port}"\n[containerd]\nenabled = false\n`,
    );
    const once = await daemonOnce(root);
    if (once.code !== 0) throw new Error(`kata-sysextd --once failed (${once.code}):\n${once.stderr}`);
    const link = join(root, "etc/extensions/kata-containers.raw");
    const [kept, keptServer] = [root, server];
    return {
      root,
      port,
      activeLink: () => readlinkSync(link),
      close: async () => {
        await keptServer.close();
        rmSync(kept, { recursive: true, force: true });
        rmSync(pub, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await server?.close();
    if (root !== null) rmSync(root, { recursive: true, force: true });
    rmSync(pub, { recursive: true, force: true });
    throw err;
  }
}
