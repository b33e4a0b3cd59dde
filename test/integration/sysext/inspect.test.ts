// inspectImage reads an image's extension-release out of a real squashfs: bytes judged as systemd-sysext judges
// them (src/release/os-release.ts releaseText), never repaired into text systemd would refuse.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { KataError } from "../../../src/errors.ts";
import { extensionReleasePath } from "../../../src/release/os-release.ts";
import { inspectImage } from "../../../src/sysext/inspect.ts";
import { buildImage } from "../../helpers/images.ts";

const dir = mkdtempSync(join(tmpdir(), "kata-inspect-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

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
});
