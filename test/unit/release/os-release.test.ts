import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { KataError } from "../../../src/errors.ts";
import {
  hostAfterUpdate,
  hostArchitecture,
  parseExtensionRelease,
  parseHostRelease,
  readExtensionRelease,
  readHostRelease,
  readHostReleaseUnder,
} from "../../../src/release/os-release.ts";

const dir = mkdtempSync(join(tmpdir(), "kata-os-release-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: string | Buffer): string => {
  const path = join(dir, name);
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, content);
  return path;
};

describe("os-release and extension-release", () => {
  it("reads Flatcar's os-release", () => {
    const host = parseHostRelease(
      'NAME="Flatcar Container Linux by Kinvolk"\nID=flatcar\nID_LIKE=coreos\nVERSION=4593.2.5\nVERSION_ID=4593.2.5\nBUILD_ID=\nSYSEXT_LEVEL=1.0\nFLATCAR_BOARD=amd64-usr\n',
    );
    expect(host).toMatchObject({
      id: "flatcar",
      idLike: ["coreos"],
      versionId: "4593.2.5",
      sysextLevel: "1.0",
      version: "4593.2.5",
      prettyName: null,
      problems: [],
    });
    expect(host.values.FLATCAR_BOARD).toBe("amd64-usr");
    expect(host.values.BUILD_ID).toBe("");
  });

  it("reads the sysext-bakery's extension-release", () => {
    const ext = parseExtensionRelease("ID=_any\nARCHITECTURE=x86-64\nEXTENSION_RELOAD_MANAGER=1\n");
    expect(ext).toMatchObject({
      id: "_any",
      architecture: "x86-64",
      scope: null,
      versionId: null,
      sysextLevel: null,
      reloadManager: true,
    });
  });

  it("keeps absent and empty apart", () => {
    expect(parseExtensionRelease("SYSEXT_SCOPE=\n").scope).toEqual([]);
    expect(parseExtensionRelease("ID=x\n").scope).toBeNull();
    expect(parseExtensionRelease('SYSEXT_SCOPE=" system\tportable "\n').scope).toEqual(["system", "portable"]);
    expect(parseHostRelease('ID_LIKE="rhel  fedora"\n').idLike).toEqual(["rhel", "fedora"]);
  });

  it.each([
    ["missing", join(dir, "nope"), "release-unreadable", "cannot read os-release (ENOENT)"],
    ["empty", file("empty", ""), "release-unreadable", "os-release file is empty"],
    ["a directory", dir, "release-unreadable", "EISDIR"],
    ["not UTF-8", file("latin1", Buffer.from([0x49, 0x44, 0x3d, 0xe9, 0x0a])), "release-invalid", "not valid UTF-8"],
    ["NUL-holding", file("nul", "ID=flatcar\n\0"), "release-invalid", "NUL byte at offset 11"],
  ])("a %s file is a KataError naming the path", async (_title, path, code, message) => {
    const err = await readHostRelease(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KataError);
    expect((err as KataError).code).toBe(code);
    expect((err as KataError).message).toContain(path);
    expect((err as KataError).message).toContain(message);
    expect((err as KataError).remedy).toBeTruthy();
  });

  it("keeps a leading byte-order mark, so the first key is not ID (systemd 252: 'ID' field not found)", async () => {
    const host = await readHostRelease(file("bom", "\uFEFFID=flatcar\nVERSION_ID=4593.2.5\n"));
    expect(host.id).toBeNull();
    expect(host.versionId).toBe("4593.2.5");
    expect(host.problems[0]?.message).toContain("byte-order mark");
  });

  it("reads an extension-release file", async () => {
    const ext = await readExtensionRelease(file("extension-release.kata-containers", "ID=_any\n"));
    expect(ext.id).toBe("_any");
  });

  it("reads the host release under a root: /etc/os-release first, then /usr/lib/os-release", async () => {
    const root = join(dir, "root");
    file("root/usr/lib/os-release", "ID=flatcar\nVERSION_ID=4593.2.5\n");
    expect((await readHostReleaseUnder(root)).id).toBe("flatcar");
    file("root/etc/os-release", "ID=debian\n");
    expect((await readHostReleaseUnder(root)).id).toBe("debian");
    const none = await readHostReleaseUnder(join(dir, "no-root")).catch((e: unknown) => e);
    expect((none as KataError).code).toBe("release-unreadable");
  });

  it("follows an absolute /etc/os-release symlink inside the root, not to this machine's file", async () => {
    const root = join(dir, "abslink");
    file("abslink/usr/lib/os-release", "ID=flatcar-under-root\n");
    mkdirSync(join(root, "etc"));
    symlinkSync("/usr/lib/os-release", join(root, "etc/os-release"));
    expect((await readHostReleaseUnder(root)).id).toBe("flatcar-under-root");
  });
});

describe("hostAfterUpdate", () => {
  it("keeps identity and level, takes the update's version", () => {
    const now = parseHostRelease(
      "ID=flatcar\nID_LIKE=coreos\nVERSION=4593.2.5\nVERSION_ID=4593.2.5\nSYSEXT_LEVEL=1.0\n",
    );
    const next = hostAfterUpdate(now, "4650.0.0");
    expect(next).toMatchObject({ id: "flatcar", idLike: ["coreos"], sysextLevel: "1.0", versionId: "4650.0.0" });
    expect(next.values.VERSION_ID).toBe("4650.0.0");
    expect(now.versionId).toBe("4593.2.5");
  });
});

describe("hostArchitecture", () => {
  it.each([
    ["x86_64", "x64", "x86-64"],
    ["aarch64", "arm64", "arm64"],
    ["i686", "ia32", "x86"],
    ["armv7l", "arm", "arm"],
    ["ppc64le", "ppc64", "ppc64-le"],
    ["s390x", "s390x", "s390x"],
    ["riscv64", "riscv64", "riscv64"],
    ["loongarch64", "loong64", "loongarch64"],
    ["unknown", "x64", "x86-64"],
  ])("uname %s (node %s) is %s", (machine, arch, expected) => {
    expect(hostArchitecture(machine, arch)).toBe(expected);
  });

  it("names this machine in systemd's naming", () => {
    expect(["x86-64", "arm64"]).toContain(hostArchitecture());
  });
});

describe("release files from hostile sources", () => {
  it("refuses a file larger than any release file without reading all of it", async () => {
    const big = file("big", `ID=_any\n${"#".repeat(200_000)}\n`);
    const err = await readExtensionRelease(big).catch((e: unknown) => e);
    expect((err as KataError).code).toBe("release-invalid");
    expect((err as KataError).message).toContain("larger than");
  });
});
