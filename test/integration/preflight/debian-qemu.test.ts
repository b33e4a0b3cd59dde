// A real hypervisor binary: QEMU from Debian's qemu-system-x86 package (fetched with apt-get download, the
// package registry this machine and CI can reach, and cached under /var/tmp). Two independent oracles judge the
// ABI check: the host's loader cache (`ldconfig -p`) for which libraries are missing, and the package's own
// Depends line (libc6 (>= X), computed by dpkg-shlibdeps from the symbol versions) for the glibc it needs.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkAbi } from "../../../src/elf/abi.ts";
import { readElf } from "../../../src/elf/read.ts";
import { hostPaths } from "../../../src/paths.ts";
import { runPreflight } from "../../../src/preflight/run.ts";
import { buildHost, buildPayload, PATHS } from "../../fixtures/preflight/hosts.ts";
import { ensureHelpers, flatcarLibs, oldLibc } from "../../fixtures/preflight/toolchain.ts";
import { skipWithout } from "../../helpers/needs.ts";

const CACHE = "/var/tmp/kata-sysextd-test-debs";
const scratch = mkdtempSync(join(tmpdir(), "kata-debian-qemu-"));
let deb: string | null = null;
let qemu = "";
let whyNot = "";

function findDeb(): string | null {
  if (!existsSync(CACHE)) return null;
  const name = readdirSync(CACHE).find((f) => f.startsWith("qemu-system-x86_") && f.endsWith(".deb"));
  return name === undefined ? null : join(CACHE, name);
}

beforeAll(() => {
  ensureHelpers();
  deb = findDeb();
  if (deb === null) {
    mkdirSync(CACHE, { recursive: true });
    const got = spawnSync("apt-get", ["download", "qemu-system-x86"], {
      cwd: CACHE,
      encoding: "utf8",
      timeout: 120_000,
    });
    deb = findDeb();
    if (deb === null) whyNot = `apt-get download qemu-system-x86 failed: ${got.stderr || got.error?.message}`;
  }
  if (deb !== null) {
    execFileSync("dpkg-deb", ["-x", deb, join(scratch, "pkg")]);
    qemu = join(scratch, "pkg/usr/bin/qemu-system-x86_64");
  }
}, 180_000);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const needGlibcFromDepends = (): string => {
  const depends = execFileSync("dpkg-deb", ["-f", deb ?? "", "Depends"], { encoding: "utf8" });
  const min = /libc6 \(>= ([0-9.]+)\)/.exec(depends)?.[1];
  if (min === undefined) throw new Error(`no libc6 version in Depends: ${depends}`);
  return `GLIBC_${min}`;
};

describe("QEMU from Debian's qemu-system-x86", () => {
  it("on this machine: exactly the libraries the loader cache lacks are missing", async (ctx) => {
    if (deb === null && skipWithout(whyNot, "the Debian qemu payload test")) ctx.skip(whyNot);
    const read = await readElf(qemu);
    if (!read.elf) throw new Error(read.reason);
    const cache = execFileSync("ldconfig", ["-p"], { encoding: "utf8" });
    const known = new Set([...cache.matchAll(/^\s+(\S+) \(libc6,x86-64/gm)].map((m) => m[1]));
    const expectedMissing = read.info.needed.filter((lib) => !known.has(lib)).sort();

    const [finding] = await checkAbi([qemu], { root: "/" });
    const missing = (finding?.problems ?? [])
      .flatMap((p) => (p.kind === "library-missing" && p.neededBy === qemu ? [p.library] : []))
      .sort();
    expect(missing).toEqual(expectedMissing);
    expect(finding?.ok).toBe(expectedMissing.length === 0);
    // The loader agrees: if anything is missing, the binary does not start.
    if (expectedMissing.length > 0) {
      const ran = spawnSync(qemu, ["--version"], { encoding: "utf8" });
      expect(ran.stderr).toContain("error while loading shared libraries");
    }
  });

  it("needs the glibc its package Depends line says, and an old Flatcar glibc lacks it", async (ctx) => {
    if (deb === null && skipWithout(whyNot, "the Debian qemu payload test")) ctx.skip(whyNot);
    const [here] = await checkAbi([qemu], { root: "/" });
    expect(here?.glibcNeeded).toBe(needGlibcFromDepends());

    const old = mkdtempSync(join(scratch, "flatcar-old-"));
    flatcarLibs(old, oldLibc());
    const [there] = await checkAbi([qemu], { root: old });
    expect(there?.ok).toBe(false);
    expect(there?.glibcProvided).toBe("GLIBC_2.17");
    expect(there?.problems).toContainEqual(
      expect.objectContaining({
        kind: "version-missing",
        library: "libc.so.6",
        version: needGlibcFromDepends(),
        neededBy: qemu,
      }),
    );
  });

  it("as the payload's QEMU: the preflight fails qemu on ABI and on running it, and leaves clh ready", async (ctx) => {
    if (deb === null && skipWithout(whyNot, "the Debian qemu payload test")) ctx.skip(whyNot);
    const root = buildPayload(buildHost({}), { hypervisors: ["qemu", "clh"], replace: { [PATHS.qemu]: qemu } });
    // The fixture host has only the loader and libc: QEMU's other 30 libraries are all missing there.
    const r = await runPreflight({ paths: hostPaths(root) });
    const abi = r.checks.find((c) => c.id === "abi" && c.hypervisor === "qemu");
    expect(abi?.status).toBe("fail");
    expect(abi?.detail).toMatch(/^\/opt\/kata\/bin\/qemu-system-x86_64: needs lib\S+, not found; .*; and \d+ more$/);
    expect(r.checks.find((c) => c.id === "hypervisor-binary" && c.hypervisor === "qemu")?.status).toBe("fail");
    expect(r.hypervisors.find((h) => h.name === "clh")?.ok).toBe(true);
    expect(r.hypervisors.find((h) => h.name === "qemu")?.ok).toBe(false);
    rmSync(root, { recursive: true, force: true });
  });
});
