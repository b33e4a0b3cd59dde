// Paths inside another root: symlinks are followed the way they would be after a chroot.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { hostLibDirs, regularFileInRoot, resolveInRoot } from "../../../src/elf/root.ts";

const root = mkdtempSync(join(tmpdir(), "kata-root-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const put = (path: string, content = ""): void => {
  mkdirSync(join(root, path, ".."), { recursive: true });
  writeFileSync(join(root, path), content);
};

describe("resolveInRoot", () => {
  put("/usr/lib64/libc.so.6", "libc");
  symlinkSync("/usr/lib64", join(root, "lib64")); // absolute, as on Flatcar
  mkdirSync(join(root, "etc"), { recursive: true });
  symlinkSync("../../../../../../etc/passwd", join(root, "etc/escape"));
  symlinkSync("loop-b", join(root, "loop-a"));
  symlinkSync("loop-a", join(root, "loop-b"));

  it("follows absolute symlinks inside the root, never out of it", async () => {
    expect(await resolveInRoot(root, "/lib64/libc.so.6")).toBe(join(root, "usr/lib64/libc.so.6"));
    expect(await resolveInRoot(root, "/etc/escape")).toBe(null); // root/etc/passwd does not exist
    put("/etc/passwd", "fixture");
    expect(await resolveInRoot(root, "/etc/escape")).toBe(join(root, "etc/passwd"));
    expect(await resolveInRoot(root, "/../../lib64/libc.so.6")).toBe(join(root, "usr/lib64/libc.so.6"));
  });

  it("gives up on loops and missing paths", async () => {
    expect(await resolveInRoot(root, "/loop-a")).toBe(null);
    expect(await resolveInRoot(root, "/no/such/file")).toBe(null);
  });

  it("regularFileInRoot only answers for regular files", async () => {
    expect(await regularFileInRoot(root, "/lib64/libc.so.6")).toBe(join(root, "usr/lib64/libc.so.6"));
    expect(await regularFileInRoot(root, "/lib64")).toBe(null);
  });

  it("on the real root it is realpath", async () => {
    expect(await resolveInRoot("/", "/lib64/ld-linux-x86-64.so.2")).toMatch(/ld-linux-x86-64\.so\.2$/);
  });
});

describe("hostLibDirs", () => {
  it("reads ld.so.conf with includes and comments, then glibc's defaults", async () => {
    const r = mkdtempSync(join(root, "ldconf-"));
    mkdirSync(join(r, "etc/ld.so.conf.d"), { recursive: true });
    writeFileSync(join(r, "etc/ld.so.conf"), "# comment\ninclude /etc/ld.so.conf.d/*.conf\n/opt/extra/lib\n");
    writeFileSync(join(r, "etc/ld.so.conf.d/b.conf"), "/b/lib # trailing comment\n");
    writeFileSync(join(r, "etc/ld.so.conf.d/a.conf"), "/a/lib\n");
    writeFileSync(join(r, "etc/ld.so.conf.d/ignored.txt"), "/ignored\n");
    const dirs = await hostLibDirs(r);
    expect(dirs.slice(0, 3)).toEqual(["/a/lib", "/b/lib", "/opt/extra/lib"]);
    expect(dirs).toContain("/usr/lib64");
    expect(dirs).toContain("/lib/x86_64-linux-gnu");
    expect(dirs).not.toContain("/ignored");
  });
});
