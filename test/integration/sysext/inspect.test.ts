// inspectImage reads an image's extension-release out of a real squashfs: bytes judged as systemd-sysext judges
// them (src/release/os-release.ts releaseText), never repaired into text systemd would refuse.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { KataError } from "../../../src/errors.ts";
import { extensionReleasePath } from "../../../src/release/os-release.ts";
import { inspectImage, payloadProblems } from "../../../src/sysext/inspect.ts";
import { squashfsXattrNames } from "../../../src/sysext/squashfs-xattrs.ts";
import { buildImage, type FileSpec } from "../../helpers/images.ts";

const dir = mkdtempSync(join(tmpdir(), "kata-inspect-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** security.capability granting cap_net_raw=ep, as setcap writes it (setfattr's 0s: base64). */
const CAP_NET_RAW = { "security.capability": "0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=" };

/** Files each with a user xattr long enough that together they fill several metadata blocks. */
const manyXattrs = (n: number): Record<string, FileSpec> =>
  Object.fromEntries(
    Array.from({ length: n }, (_, i) => [
      `usr/share/kata-many/f${i}`,
      { content: `${i}\n`, mode: 0o644, xattrs: { [`user.k${i}`]: `v${i}`.padEnd(60, "x") } },
    ]),
  );

/** An image whose release file holds exactly these bytes. */
const imageWith = (file: string, bytes: Buffer): string =>
  buildImage(
    {
      version: "3.32.0",
      extensionRelease: null,
      files: { [extensionReleasePath("kata-containers")]: { content: bytes, mode: 0o644 } },
    },
    join(dir, file),
  );

describe("inspectImage", () => {
  it("refuses an erofs image, whose modes and xattrs it cannot list, naming squashfs as the way out", async () => {
    // A clean payload with a setuid binary: what an erofs image could carry unchecked.
    const image = buildImage(
      { version: "3.32.0", format: "erofs", files: { "usr/bin/su-kata": { content: "#!/bin/sh\n", mode: 0o4755 } } },
      join(dir, "erofs.raw"),
    );
    const err = await inspectImage(image, "kata-containers").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KataError);
    expect((err as KataError).code).toBe("inspect-failed");
    expect((err as KataError).message).toMatch(/is an erofs image, .*cannot check for device nodes, setuid files/);
    expect((err as KataError).remedy).toMatch(/squashfs/);
  });

  it("returns the release file's text", async () => {
    const contents = await inspectImage(imageWith("ok.raw", Buffer.from("ID=_any\nNAME=Café\n")), "kata-containers");
    expect(contents.extensionRelease).toBe("ID=_any\nNAME=Café\n");
  });

  it("refuses a release file that is not UTF-8 instead of repairing it (systemd 252 does not merge it)", async () => {
    const image = imageWith("latin1.raw", Buffer.from("ID=_any\nVERSION_ID=\xe9\n", "latin1"));
    const err = await inspectImage(image, "kata-containers").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KataError);
    expect((err as KataError).code).toBe("inspect-failed");
    expect((err as KataError).message).toContain("not valid UTF-8");
    expect((err as KataError).message).toContain(image);
  });

  it("names every device node and setuid or setgid file it refuses", async () => {
    const image = buildImage(
      {
        version: "3.32.0",
        files: {
          "usr/lib/x": { device: "c", major: 1, minor: 3, mode: 0o666 },
          "usr/lib/disk": { device: "b", major: 7, minor: 0, mode: 0o660 },
          "usr/bin/su-kata": { content: "#!/bin/sh\n", mode: 0o4755 },
          "opt/kata/bin/sg": { content: "#!/bin/sh\n", mode: 0o2711 },
          "opt/kata/bin/plain": { content: "#!/bin/sh\n", mode: 0o755 },
        },
      },
      join(dir, "dev.raw"),
    );
    const contents = await inspectImage(image, "kata-containers");
    const problems = payloadProblems(contents, "kata-containers");
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(
      /^ships device nodes \((\/usr\/lib\/x, \/usr\/lib\/disk|\/usr\/lib\/disk, \/usr\/lib\/x)\)/,
    );
    expect(problems[1]).toContain("ships setuid or setgid files (");
    expect(problems[1]).toContain("/usr/bin/su-kata");
    expect(problems[1]).toContain("/opt/kata/bin/sg");
    expect(problems[1]).not.toContain("plain");
  });

  it.each(["gzip", "zstd"] as const)(
    "refuses files with capabilities, read from a %s image's xattr table; other xattrs alone pass",
    async (compressor) => {
      const capped = buildImage(
        {
          version: "3.32.0",
          compressor,
          files: {
            "usr/bin/capped": { content: "#!/bin/sh\n", mode: 0o755, xattrs: CAP_NET_RAW },
            // More xattrs than one 8 KiB metadata block holds: the table is read across blocks.
            ...manyXattrs(200),
          },
        },
        join(dir, `caps-${compressor}.raw`),
      );
      const problems = payloadProblems(await inspectImage(capped, "kata-containers"), "kata-containers");
      expect(problems).toEqual([
        "ships files with file capabilities (security.capability); systemd-sysext 252 would merge them with their privilege",
      ]);
      const plain = buildImage(
        { version: "3.32.0", compressor, files: manyXattrs(200) },
        join(dir, `x-${compressor}.raw`),
      );
      expect(payloadProblems(await inspectImage(plain, "kata-containers"), "kata-containers")).toEqual([]);
    },
  );

  it("bounds what the xattr table inflates to, not only what it takes on disk", async () => {
    const image = buildImage({ version: "3.32.0", files: manyXattrs(200) }, join(dir, "inflates.raw"));
    // ~200 entries of ~70 bytes: a few hundred bytes compressed, some 14 KiB inflated.
    expect((await squashfsXattrNames(image, 1 << 20)).size).toBe(200);
    await expect(squashfsXattrNames(image, 4096)).rejects.toMatchObject({
      code: "inspect-failed",
      message: expect.stringContaining("its xattr table holds more than 4096 bytes"),
    });
  });

  it("refuses an image whose xattrs it cannot read (xz), saying how to republish it; without xattrs it passes", async () => {
    // Enough xattrs that mksquashfs compresses their blocks (a tiny table is stored as is, and read).
    const files = {
      "usr/bin/capped": { content: "#!/bin/sh\n", mode: 0o755, xattrs: CAP_NET_RAW },
      ...manyXattrs(200),
    };
    const xz = buildImage({ version: "3.32.0", compressor: "xz", files }, join(dir, "caps-xz.raw"));
    const err = await inspectImage(xz, "kata-containers").catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "inspect-failed", message: expect.stringContaining("compressed with xz") });
    expect((err as KataError).remedy).toContain("gzip or zstd");
    const bare = buildImage({ version: "3.32.0", compressor: "xz" }, join(dir, "bare-xz.raw"));
    expect(payloadProblems(await inspectImage(bare, "kata-containers"), "kata-containers")).toEqual([]);
  });

  it("refuses a listing or a release file too big to inspect as the image's fault (quarantined, not fetched again)", async () => {
    const image = imageWith("big.raw", Buffer.from(`ID=_any\n${"#".repeat(3000)}\n`));
    const listing = await inspectImage(image, "kata-containers", { maxListingBytes: 64 }).catch((e: unknown) => e);
    expect(listing).toMatchObject({
      code: "inspect-failed",
      message: expect.stringContaining("file listing is larger than 64 bytes"),
    });
    const release = await inspectImage(image, "kata-containers", { maxReleaseBytes: 1024 }).catch((e: unknown) => e);
    expect(release).toMatchObject({
      code: "inspect-failed",
      message: expect.stringContaining("extension-release.kata-containers is larger than 1024 bytes"),
    });
    expect((await inspectImage(image, "kata-containers")).extensionRelease).toContain("ID=_any");
  });

  it("reads a release file under another name only when its xattr says strict=false, and says where from", async () => {
    const image = buildImage(
      {
        version: "3.32.0",
        extensionRelease: null,
        files: {
          "usr/lib/extension-release.d/extension-release.kata": {
            content: "ID=_any\n",
            mode: 0o644,
            xattrs: { "user.extension-release.strict": "0" },
          },
        },
      },
      join(dir, "relaxed.raw"),
    );
    const contents = await inspectImage(image, "kata-containers");
    expect(contents.extensionRelease).toBe("ID=_any\n");
    expect(contents.releaseFrom).toBe("usr/lib/extension-release.d/extension-release.kata");
    expect(readdirSync(dir).filter((f) => f.startsWith(".release-"))).toEqual([]);
  });
});
