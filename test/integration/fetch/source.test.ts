// fetchManifest and fetchOptional against a real HTTP server on 127.0.0.1, with real OpenPGP signatures made by
// keys generated in the test.
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { KataError } from "../../../src/errors.ts";
import { FetchError } from "../../../src/fetch/http.ts";
import {
  fetchManifest,
  fetchOptional,
  type ManifestOptions,
  SIGNATURE_CLOCK_SKEW_MS,
} from "../../../src/fetch/source.ts";
import {
  generateKeyPair,
  publishRelease,
  type ReleaseServer,
  signDetached,
  startReleaseServer,
  testSigningKey,
} from "../../helpers/release-server.ts";
import { fakeClock, memoryLogger, tempDir, trickleServer } from "./support.ts";

const SUMS_PATH = "/kata-containers/SHA256SUMS";
let dir: string;
let server: ReleaseServer;
let sums: string;
let keyring: string;

beforeAll(async () => {
  dir = tempDir("source");
  ({ sums } = await publishRelease(dir, {
    images: [
      { version: "3.2.0", content: randomBytes(1000) },
      { version: "3.3.0", content: randomBytes(1000) },
    ],
    sign: "binary",
  }));
  keyring = join(dir, "trusted.asc");
  writeFileSync(keyring, (await testSigningKey()).publicKeyArmored);
  writeFileSync(join(dir, "kata-containers", "notes.txt"), "release notes\n");
  server = await startReleaseServer(dir);
});

afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

afterEach(() => {
  server.clearFaults();
  server.requests.length = 0;
  writeFileSync(join(dir, "kata-containers", "SHA256SUMS"), sums);
});

function options(overrides: Partial<ManifestOptions> = {}): ManifestOptions {
  return {
    dir: `${server.url}kata-containers/`,
    verify: "signature",
    keyring,
    maxBytes: 1 << 20,
    connectTimeoutMs: 2000,
    idleTimeoutMs: 2000,
    // The signatures are made now, by the real clock: a fake one from another day would date them in the future.
    clock: fakeClock(Date.now()),
    log: memoryLogger(),
    retries: 1,
    random: () => 0.5,
    ...overrides,
  };
}

async function rejection(opts: ManifestOptions): Promise<KataError> {
  const err = await fetchManifest(opts).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(KataError);
  return err as KataError;
}

describe("checksum", () => {
  test("returns SHA256SUMS as published, without asking for a signature", async () => {
    expect(await fetchManifest(options({ verify: "checksum" }))).toEqual({ text: sums, trust: "checksum" });
    expect(server.requests.map((r) => r.path)).toEqual([SUMS_PATH]);
  });

  test("a missing manifest is a typed 404", async () => {
    const err = await rejection(options({ verify: "checksum", dir: `${server.url}other/` }));
    expect(err).toBeInstanceOf(FetchError);
    expect((err as FetchError).status).toBe(404);
    expect(server.requests.map((r) => r.path)).toEqual(["/other/SHA256SUMS"]);
  });

  test("a 503 with Retry-After is retried after the asked delay", async () => {
    server.setFault(SUMS_PATH, { kind: "status", status: 503, retryAfter: "12" }, 1);
    const clock = fakeClock();
    expect((await fetchManifest(options({ verify: "checksum", clock }))).text).toBe(sums);
    expect(clock.sleeps).toEqual([12_000]);
  });
});

describe("signature", () => {
  test("a good binary signature gives trust signature", async () => {
    expect(await fetchManifest(options())).toEqual({ text: sums, trust: "signature" });
    expect(server.requests.map((r) => r.path)).toEqual([SUMS_PATH, `${SUMS_PATH}.gpg`]);
  });

  test("a good armored signature is accepted too", async () => {
    const armoredDir = tempDir("armored");
    try {
      const published = await publishRelease(armoredDir, {
        images: [{ version: "3.2.0", content: randomBytes(100) }],
        sign: "armored",
      });
      const armored = await startReleaseServer(armoredDir);
      try {
        expect(await fetchManifest(options({ dir: `${armored.url}kata-containers/` }))).toEqual({
          text: published.sums,
          trust: "signature",
        });
      } finally {
        await armored.close();
      }
    } finally {
      rmSync(armoredDir, { recursive: true, force: true });
    }
  });

  test("a manifest changed after signing is rejected", async () => {
    writeFileSync(join(dir, "kata-containers", "SHA256SUMS"), `${sums}${"f".repeat(64)}  evil.raw\n`);
    const err = await rejection(options());
    expect(err.code).toBe("signature-invalid");
    expect(err.message).toContain("nothing from this manifest is used");
  });

  test("a signature by a key outside the keyring is rejected", async () => {
    const stranger = await generateKeyPair("stranger <stranger@example.invalid>");
    const otherDir = tempDir("stranger");
    try {
      await publishRelease(otherDir, { images: [{ version: "3.2.0", content: randomBytes(100) }] });
      const sumsPath = join(otherDir, "kata-containers", "SHA256SUMS");
      writeFileSync(`${sumsPath}.gpg`, await signDetached(readFileSync(sumsPath), "binary", stranger));
      const other = await startReleaseServer(otherDir);
      try {
        expect((await rejection(options({ dir: `${other.url}kata-containers/` }))).code).toBe("signature-invalid");
      } finally {
        await other.close();
      }
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
  });

  test("a missing SHA256SUMS.gpg is signature-invalid", async () => {
    server.setFault(`${SUMS_PATH}.gpg`, { kind: "status", status: 404 });
    const err = await rejection(options());
    expect(err.code).toBe("signature-invalid");
    expect(err.message).toContain("missing");
  });

  test("a garbage signature is signature-invalid", async () => {
    server.setFault(`${SUMS_PATH}.gpg`, { kind: "oversize", bytes: 500, contentLength: true });
    expect((await rejection(options())).code).toBe("signature-invalid");
  });

  test("a keyring of several armored exports appended to each other trusts every key in it", async () => {
    const before = await generateKeyPair("older <older@example.invalid>");
    const after = await generateKeyPair("newer <newer@example.invalid>");
    const appended = join(dir, "appended.asc");
    const signer = (await testSigningKey()).publicKeyArmored;
    writeFileSync(appended, [before.publicKeyArmored, signer, after.publicKeyArmored].join("\n"));
    expect(await fetchManifest(options({ keyring: appended }))).toEqual({ text: sums, trust: "signature" });
    // Without the signer's block, the same file is refused.
    writeFileSync(appended, [before.publicKeyArmored, after.publicKeyArmored].join("\n"));
    expect((await rejection(options({ keyring: appended }))).code).toBe("signature-invalid");
  });

  test("a signature dated a little after this host's clock is accepted; further ahead, the clock is blamed", async () => {
    const gpg = join(dir, "kata-containers", "SHA256SUMS.gpg");
    const published = readFileSync(gpg);
    try {
      const key = await testSigningKey();
      // The test key was made when this process started: a clock behind that would make it newer than its use.
      const at = (ms: number) => options({ clock: fakeClock(Date.now() - ms) });
      writeFileSync(gpg, await signDetached(Buffer.from(sums), "binary", key));
      expect(await fetchManifest(at(SIGNATURE_CLOCK_SKEW_MS - 60_000))).toEqual({ text: sums, trust: "signature" });
      const err = await rejection(at(SIGNATURE_CLOCK_SKEW_MS + 60_000));
      expect(err.code).toBe("signature-invalid");
      expect(err.remedy).toMatch(/after this host's clock .*check time synchronisation/);
    } finally {
      writeFileSync(gpg, published);
    }
  });

  test("an unreadable or empty keyring is signature-invalid", async () => {
    expect((await rejection(options({ keyring: join(dir, "no-such.asc") }))).code).toBe("signature-invalid");
    const empty = join(dir, "empty.asc");
    writeFileSync(empty, "");
    expect((await rejection(options({ keyring: empty }))).code).toBe("signature-invalid");
  });
});

describe("the manifest's cap", () => {
  test("is [fetch] manifest_max_bytes: over it the remedy names that key, and raising it is enough", async () => {
    const error = await rejection(options({ verify: "checksum", maxBytes: sums.length - 1 }));
    expect(error).toMatchObject({ code: "fetch-too-large" });
    expect(error.remedy).toContain("[fetch] manifest_max_bytes");
    expect((await fetchManifest(options({ verify: "checksum", maxBytes: sums.length }))).text).toBe(sums);
  });
});

describe("fetchOptional", () => {
  const opts = { connectTimeoutMs: 2000, idleTimeoutMs: 2000, clock: fakeClock(), log: memoryLogger(), retries: 0 };

  test("returns the file's text", async () => {
    expect(await fetchOptional(`${server.url}kata-containers/notes.txt`, opts)).toBe("release notes\n");
  });

  test("404 is null, other failures are errors", async () => {
    expect(await fetchOptional(`${server.url}kata-containers/absent.txt`, opts)).toBeNull();
    server.setFault("/kata-containers/notes.txt", { kind: "status", status: 500 });
    await expect(fetchOptional(`${server.url}kata-containers/notes.txt`, opts)).rejects.toMatchObject({
      code: "fetch-http-status",
      status: 500,
    });
  });
});

describe("a server that trickles a small file", () => {
  test("one attempt is bounded: a retryable timeout, and the caller's own abort stays an abort", async () => {
    const trickle = await trickleServer("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", "a", 20);
    try {
      const opts = options({ dir: trickle.url, verify: "checksum", retries: 0, deadlineMs: 300 });
      const started = Date.now();
      const err = await rejection(opts);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(err).toMatchObject({ name: "FetchError", kind: "timeout", retryable: true });
      expect(err.message).toContain("not complete after 0.3 s");

      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      const aborted = await rejection({ ...opts, deadlineMs: 60_000, signal: controller.signal });
      expect(aborted).toMatchObject({ kind: "aborted" });
    } finally {
      await trickle.close();
    }
  });
});
