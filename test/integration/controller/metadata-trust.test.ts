// How far metadata.json is trusted: as far as the verified SHA256SUMS vouches for it. Real release server on
// 127.0.0.1, real OpenPGP signatures over SHA256SUMS, the real url-file source; and one --once pass that takes a
// listed metadata.json's withdrawal into account.
import { copyFileSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemClock, systemRandom } from "../../../src/clock.ts";
import { DEFAULTS } from "../../../src/config/schema.ts";
import { urlFileSource } from "../../../src/fetch/release-source.ts";
import { createLogger } from "../../../src/log/logger.ts";
import { buildImage } from "../../helpers/images.ts";
import {
  publishRelease,
  type ReleaseServer,
  sha256Hex,
  startReleaseServer,
  testSigningKey,
} from "../../helpers/release-server.ts";
import { daemonOnce, makeSandboxRoot, writeConfig } from "../../helpers/sandbox.ts";

const METADATA = JSON.stringify({ schemaVersion: 1, withdrawn: [{ kata: "3.32.0", reason: "shim crashes" }] });
let dir: string;
let server: ReleaseServer;
let keyring: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kata-pub-meta-"));
  keyring = join(dir, "trusted.asc");
  writeFileSync(keyring, (await testSigningKey()).publicKeyArmored);
  server = await startReleaseServer(dir);
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Publishes two images; `listed` adds a metadata.json line (with the digest of `listedAs`) to SHA256SUMS. */
async function publish(opts: { served: string | null; listed: boolean; listedAs?: string; sign?: boolean }) {
  const images = ["3.30.0", "3.32.0"].map((version) => ({
    version,
    content: buildImage({ version }, join(dir, "build", `${version}.raw`)),
  }));
  const line = `${sha256Hex(Buffer.from(opts.listedAs ?? opts.served ?? ""))}  metadata.json`;
  await publishRelease(dir, {
    images,
    extraLines: opts.listed ? [line] : [],
    sign: opts.sign === true ? "binary" : false,
  });
  const file = join(dir, "kata-containers/metadata.json");
  if (opts.served === null) rmSync(file, { force: true });
  else writeFileSync(file, opts.served);
}

function source(verify: "checksum" | "signature") {
  const warnings: string[] = [];
  const log = createLogger((level, message) => {
    if (level === "warning") warnings.push(message);
  });
  const src = urlFileSource(
    { ...DEFAULTS, fetch: { ...DEFAULTS.fetch, retries: 1 } },
    { url: server.url, name: "kata-containers", verify, keyring },
    { clock: systemClock, random: systemRandom, log },
  );
  return { src, warnings };
}

describe("metadata.json and SHA256SUMS", () => {
  it("listed and matching: used, also under verify = signature", async () => {
    await publish({ served: METADATA, listed: true, sign: true });
    const { src, warnings } = source("signature");
    expect((await src.manifest()).metadata).toBe(METADATA);
    expect(warnings).toEqual([]);
  });

  it("listed but altered on the way: the pass fails with digest-mismatch", async () => {
    await publish({ served: METADATA.replace("3.32.0", "3.99.0"), listed: true, listedAs: METADATA });
    await expect(source("checksum").src.manifest()).rejects.toMatchObject({
      code: "digest-mismatch",
      message: expect.stringContaining("metadata.json: SHA-256 is"),
    });
  });

  it("listed but stripped (404): the pass fails instead of forgetting the withdrawals", async () => {
    await publish({ served: null, listed: true, listedAs: METADATA });
    await expect(source("checksum").src.manifest()).rejects.toMatchObject({
      code: "manifest-invalid",
      message: expect.stringContaining("SHA256SUMS lists metadata.json, but the source does not serve it"),
    });
  });

  it("not listed: ignored with a warning under verify = signature, used under verify = checksum", async () => {
    await publish({ served: METADATA, listed: false, sign: true });
    const signed = source("signature");
    expect((await signed.src.manifest()).metadata).toBeNull();
    expect(signed.warnings).toEqual(["metadata.json is not listed in the signed SHA256SUMS; ignored"]);
    const checksum = source("checksum");
    expect((await checksum.src.manifest()).metadata).toBe(METADATA);
    expect(checksum.warnings).toEqual([]);
  });

  it("optional: a 404 is none, and a metadata host that cannot be reached is a warning, not a failed pass", async () => {
    await publish({ served: null, listed: false });
    expect(await source("checksum").src.manifest()).toMatchObject({ metadata: null, metadataUnavailable: null });

    await publish({ served: METADATA, listed: false });
    server.setFault("/kata-containers/metadata.json", { kind: "reset", afterBytes: 0 });
    try {
      const root = makeSandboxRoot();
      writeConfig(root, `[source]\nurl = "${server.url}"\n[fetch]\nretries = 1\n[containerd]\nenabled = false\n`);
      const ran = await daemonOnce(root);
      expect(ran.code, ran.stderr).toBe(0);
      expect(ran.stderr).toMatch(/warning: metadata\.json could not be fetched \(.*\); going on with none/);
      // Without the metadata nothing withdrew 3.32.0.
      expect(readlinkSync(join(root, "etc/extensions/kata-containers.raw"))).toContain("kata-containers-3.32.0");

      // policy.kernel can only be judged with the metadata: then the pass fails and says why.
      writeConfig(root, `[source]\nurl = "${server.url}"\n[fetch]\nretries = 1\n[policy]\nkernel = "6.12.x"\n`);
      const kernel = await daemonOnce(root);
      expect(kernel.code).toBe(1);
      expect(kernel.stderr).toContain('policy.kernel = "6.12.x" needs metadata.json, which could not be fetched');
      rmSync(root, { recursive: true, force: true });
    } finally {
      server.clearFaults();
    }
  });

  it("listed but unreachable: the pass fails, since the publisher vouches for it", async () => {
    await publish({ served: METADATA, listed: true });
    server.setFault("/kata-containers/metadata.json", { kind: "reset", afterBytes: 0 });
    try {
      await expect(source("checksum").src.manifest()).rejects.toMatchObject({
        code: "fetch-failed",
        message: expect.stringContaining("SHA256SUMS lists metadata.json, but it could not be fetched"),
      });
    } finally {
      server.clearFaults();
    }
  });

  it("a pass with a listed metadata.json honours its withdrawal and is not confused by the extra line", async () => {
    await publish({ served: METADATA, listed: true, sign: true });
    const root = makeSandboxRoot();
    // The default keyring path, read under --root as every /etc path is.
    copyFileSync(keyring, join(root, "etc/kata-sysextd/trusted.asc"));
    writeConfig(root, `[source]\nurl = "${server.url}"\nverify = "signature"\n`);
    const ran = await daemonOnce(root);
    expect(ran.code).toBe(0);
    expect(readlinkSync(join(root, "etc/extensions/kata-containers.raw"))).toContain("kata-containers-3.30.0");
    expect(ran.stderr).not.toContain("metadata.json is not listed");
  });

  it("a keyring missing under --root is not looked for on this machine, and the error says it is missing", async () => {
    await publish({ served: METADATA, listed: true, sign: true });
    const root = makeSandboxRoot();
    writeConfig(root, `[source]\nurl = "${server.url}"\nverify = "signature"\nkeyring = "${keyring}"\n`);
    const ran = await daemonOnce(root);
    expect(ran.code).toBe(1);
    expect(ran.stderr).toContain(`cannot read keyring ${join(root, keyring)}: no such file`);
  });
});
