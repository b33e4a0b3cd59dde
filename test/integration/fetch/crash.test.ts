// Crash and disk-full behaviour with real processes and a real tmpfs: a download killed with SIGKILL resumes
// in a fresh process, and ENOSPC is reported as disk-full with nothing left behind.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { systemRandom } from "../../../src/clock.ts";
import { KataError } from "../../../src/errors.ts";
import { run } from "../../../src/exec.ts";
import { type DownloadOptions, downloadImage, partialPath } from "../../../src/fetch/download.ts";
import { MAX_BYTES_IN_FLIGHT } from "../../../src/fetch/wire.ts";
import {
  type PublishedImage,
  publishRelease,
  type ReleaseServer,
  releasePath,
  sha256Hex,
  startReleaseServer,
} from "../../helpers/release-server.ts";
import { fakeClock, listDir, memoryLogger, tempDir } from "./support.ts";

const CHILD = join(import.meta.dirname, "download-child.ts");
let releaseDir: string;
let server: ReleaseServer;
let image: PublishedImage;

beforeAll(async () => {
  releaseDir = tempDir("crash-release");
  // Larger than what a resume cuts off the .partial, so the resume still sends a Range.
  const published = await publishRelease(releaseDir, {
    images: [{ version: "3.2.0", content: randomBytes(12 << 20) }],
  });
  image = published.images[0] as PublishedImage;
  server = await startReleaseServer(releaseDir);
});

afterAll(async () => {
  await server.close();
  rmSync(releaseDir, { recursive: true, force: true });
});

function options(store: string): DownloadOptions {
  return {
    url: `${server.url}kata-containers/${image.file}`,
    dest: join(store, image.file),
    tmpDir: store,
    expectedSha256: image.sha256,
    maxBytes: 64 << 20,
    connectTimeoutMs: 2000,
    idleTimeoutMs: 2000,
    retries: 0,
    clock: fakeClock(),
    random: systemRandom,
    log: memoryLogger(),
  };
}

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (condition()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test("a download killed with SIGKILL is resumed with Range by a fresh process", async () => {
  const store = tempDir("crash-store");
  try {
    const partial = partialPath(store, image.file);
    // The server sends 10 MiB and then stalls: the child is surely mid-download when it is killed.
    const sent = 10 << 20;
    server.setFault(releasePath(image.file), { kind: "stall", afterBytes: sent }, 1);
    const child = spawn(
      process.execPath,
      [CHILD, `${server.url}kata-containers/${image.file}`, join(store, image.file), store, image.sha256],
      {
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on("exit", (_code, signal) => resolve(signal)),
    );
    await waitFor(() => existsSync(partial) && statSync(partial).size === sent, "the partial to reach 10 MiB");
    child.kill("SIGKILL");
    expect(await exited).toBe("SIGKILL");
    expect(listDir(store)).toEqual([`.${image.file}.partial`]);

    const got = await downloadImage(options(store));
    expect(got.sha256).toBe(image.sha256);
    expect(sha256Hex(readFileSync(join(store, image.file)))).toBe(image.sha256);
    // The resume starts before the writes that may not have completed when the child died.
    expect(server.requests.filter((r) => r.path === releasePath(image.file)).map((r) => r.range)).toEqual([
      null,
      `bytes=${sent - MAX_BYTES_IN_FLIGHT}-`,
    ]);
    expect(listDir(store)).toEqual([image.file]);
  } finally {
    server.clearFaults();
    server.requests.length = 0;
    rmSync(store, { recursive: true, force: true });
  }
});

test("a full disk fails with disk-full and leaves neither image nor partial", async () => {
  const mountPoint = tempDir("tmpfs");
  const store = join(mountPoint, "images");
  await run("mount", ["-t", "tmpfs", "-o", "size=1m", "kata-fetch-test", mountPoint], { check: true });
  try {
    mkdirSync(store);
    const err = await downloadImage(options(store)).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(KataError);
    expect((err as KataError).code).toBe("disk-full");
    expect((err as KataError).remedy).toBeTruthy();
    expect(listDir(store)).toEqual([]);
  } finally {
    await run("umount", [mountPoint], { check: true });
    rmSync(mountPoint, { recursive: true, force: true });
  }
});
