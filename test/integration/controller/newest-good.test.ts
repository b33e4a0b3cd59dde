// A bad newest release must not leave a node without Kata. The sysext-bakery's directory layout, served exactly by
// a plain static server (python3 -m http.server on 127.0.0.1); real squashfs images; real `kata-sysextd --once`
// with systemd-sysext 252 under --root in a private mount namespace.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImage } from "../../helpers/images.ts";
import { publishRelease, sha256Hex } from "../../helpers/release-server.ts";
import { daemonOnce, makeSandboxRoot, writeConfig } from "../../helpers/sandbox.ts";
import { type StaticServer, startStaticServer } from "../../helpers/static-server.ts";

const LINK = "etc/extensions/kata-containers.raw";
const STATE = "var/lib/kata-sysextd/state.json";
const file = (version: string, arch = "x86-64") => `kata-containers-${version}-${arch}.raw`;

let work = "";
let mirror = "";
let server: StaticServer;
const roots: string[] = [];

/** The bakery's per-extension directory: images for both architectures, SHA256SUMS, and its sysupdate files. */
async function publishBakery(dir: string, versions: { version: string; release?: string }[]) {
  const build = join(work, "build");
  const images = versions.flatMap(({ version, release }) => [
    { version, content: buildImage({ version, extensionRelease: release }, join(build, `${version}.raw`)) },
    { version, arch: "arm64", content: Buffer.from(`arm64 image ${version}\n`) },
  ]);
  const published = await publishRelease(dir, { images });
  writeFileSync(
    join(dir, "kata-containers", "kata-containers.conf"),
    "[Transfer]\nVerify=false\n\n[Source]\nType=url-file\nPath=https://extensions.flatcar.org/extensions/kata-containers/\nMatchPattern=kata-containers-@v-%a.raw\n",
  );
  return published;
}

function sandbox(): string {
  const root = makeSandboxRoot();
  roots.push(root);
  writeConfig(root, `[source]\nurl = "${server.url}"\n[containerd]\nenabled = false\n`);
  return root;
}

const state = (root: string) => JSON.parse(readFileSync(join(root, STATE), "utf8"));
const imageGets = (version: string) => server.requests().filter((r) => r.includes(file(version))).length;
const manifestGets = () => server.requests().filter((r) => /\/SHA256SUMS /.test(r)).length;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "kata-newest-good-"));
  mirror = join(work, "mirror");
  mkdirSync(mirror);
  await publishBakery(mirror, [
    { version: "3.30.0" },
    { version: "3.32.0" },
    { version: "3.33.0" },
    { version: "3.40.0", release: "ID=ubuntu\nVERSION_ID=22.04\nARCHITECTURE=x86-64\n" },
  ]);
  // 3.33.0 is tampered with after SHA256SUMS was written: its bytes no longer match their line.
  const tampered = join(mirror, "kata-containers", file("3.33.0"));
  writeFileSync(tampered, Buffer.concat([readFileSync(tampered), Buffer.from("tampered")]));
  server = await startStaticServer(mirror);
}, 60_000);

afterAll(async () => {
  await server?.close();
  for (const root of roots) rmSync(root, { recursive: true, force: true });
  if (work !== "") rmSync(work, { recursive: true, force: true });
});

describe("newest good candidate", () => {
  it("links and merges 3.32.0 in one pass when 3.40.0 is for another OS and 3.33.0 is tampered", async () => {
    const root = sandbox();
    const manifestsBefore = manifestGets();
    const ran = await daemonOnce(root);
    expect(ran.code, ran.stderr).toBe(0);
    expect(readlinkSync(join(root, LINK))).toBe(`../../var/lib/kata-sysextd/images/${file("3.32.0")}`);
    // Two fallbacks, one reading of SHA256SUMS: the pass decides again from what it read.
    expect(manifestGets() - manifestsBefore).toBe(1);
    expect(ran.stderr).toMatch(/skipping kata-containers-3\.40\.0-x86-64\.raw: .*failed inspection.*ID/);
    expect(ran.stderr).toMatch(/skipping kata-containers-3\.33\.0-x86-64\.raw: .*SHA-256 is .*SHA256SUMS says/);
    expect(ran.stderr).toContain("activated kata-containers-3.32.0-x86-64.raw");
    expect(ran.stderr).toMatch(
      /kata-containers 3\.32\.0 is active; newer releases were skipped: 3\.40\.0 .*; 3\.33\.0 /,
    );

    const after = state(root);
    const skipped = after.skipped["kata-containers"] as { version: string; reason: string; retryAt: string | null }[];
    expect(skipped.map((s) => s.version).sort()).toEqual(["3.33.0", "3.40.0"]);
    expect(skipped.find((s) => s.version === "3.40.0")?.retryAt).toBeNull();
    expect(skipped.find((s) => s.version === "3.33.0")?.retryAt).toMatch(/^\d{4}-/);
    const failure = after.failedCandidates["kata-containers"].find((f: { version: string }) => f.version === "3.33.0");
    const listed = readFileSync(join(mirror, "kata-containers", "SHA256SUMS"), "utf8");
    expect(listed).toContain(`${failure.sha256}  ${file("3.33.0")}`);
    expect(failure).toMatchObject({ code: "digest-mismatch", attempts: 1 });

    // The next pass neither fetches the bad ones again (retry not due) nor moves: one download each, ever.
    const again = await daemonOnce(root);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toContain("activated");
    expect(again.stderr).toMatch(/newer releases were skipped: 3\.40\.0 .*; 3\.33\.0 /);
    expect(imageGets("3.33.0")).toBe(1);
    expect(imageGets("3.40.0")).toBe(1);
    expect(imageGets("3.30.0")).toBe(0);
  });

  it("tries a fixed re-upload at once, and never moves to an older image than it runs", async () => {
    const dir = join(work, "moving");
    const published = await publishBakery(dir, [{ version: "3.30.0" }, { version: "3.32.0" }]);
    const moving = await startStaticServer(dir);
    try {
      const root = sandbox();
      writeConfig(root, `[source]\nurl = "${moving.url}"\n[containerd]\nenabled = false\n`);
      expect((await daemonOnce(root)).code).toBe(0);
      expect(readlinkSync(join(root, LINK))).toContain(file("3.32.0"));

      // The publisher withdraws 3.32.0 and publishes a broken 3.33.0: the node stays on 3.32.0, not 3.30.0.
      const good = published.images.filter((i) => i.file !== file("3.32.0"));
      const broken = join(dir, "kata-containers", file("3.33.0"));
      writeFileSync(broken, "not an image at all\n");
      const lines = [...good.map((i) => `${i.sha256}  ${i.file}`), `${"0".repeat(64)}  ${file("3.33.0")}`];
      writeFileSync(join(dir, "kata-containers", "SHA256SUMS"), `${lines.join("\n")}\n`);
      rmSync(join(dir, "kata-containers", file("3.32.0")));
      const stay = await daemonOnce(root);
      expect(stay.code, stay.stderr).toBe(0);
      expect(stay.stderr).toContain("skipping kata-containers-3.33.0-x86-64.raw");
      expect(readlinkSync(join(root, LINK))).toContain(file("3.32.0"));
      expect(moving.requests().filter((r) => r.includes(file("3.30.0")))).toEqual([]);

      // Fixed in place: same name, good bytes, a new SHA256SUMS line. Tried at once, not after the backoff.
      const fixed = buildImage({ version: "3.33.0" }, join(work, "build", "fixed.raw"));
      writeFileSync(broken, readFileSync(fixed));
      lines[lines.length - 1] = `${sha256Hex(readFileSync(fixed))}  ${file("3.33.0")}`;
      writeFileSync(join(dir, "kata-containers", "SHA256SUMS"), `${lines.join("\n")}\n`);
      const up = await daemonOnce(root);
      expect(up.code, up.stderr).toBe(0);
      expect(readlinkSync(join(root, LINK))).toContain(file("3.33.0"));
      expect(state(root).skipped).toEqual({});
      expect(state(root).failedCandidates).toEqual({});
    } finally {
      await moving.close();
    }
  });

  it("skips releases over [fetch] max_bytes, and tries them at once when the operator raises the cap", async () => {
    const root = sandbox();
    const capped = (max: number) =>
      writeConfig(
        root,
        `[source]\nurl = "${server.url}"\n[fetch]\nmax_bytes = ${max}\n[containerd]\nenabled = false\n`,
      );
    capped(100);
    const small = await daemonOnce(root);
    expect(small.code).toBe(1);
    expect(small.stderr).toMatch(/skipping kata-containers-3\.32\.0-x86-64\.raw: .*exceeds the cap of 100/);
    expect(small.stderr).toContain("REMEDY=raise [fetch] max_bytes if the releases really are that large");
    expect(state(root).failedCandidates["kata-containers"]).toContainEqual(
      expect.objectContaining({ version: "3.32.0", code: "fetch-too-large", maxBytes: 100 }),
    );

    // The retry is an hour away, but the cap that refused them is gone: this pass fetches them again.
    capped(1 << 30);
    const raised = await daemonOnce(root);
    expect(raised.code, raised.stderr).toBe(0);
    expect(readlinkSync(join(root, LINK))).toBe(`../../var/lib/kata-sysextd/images/${file("3.32.0")}`);
  });

  it("names the releases it stored for another release of the OS when they are all there is", async () => {
    const dir = join(work, "other-os");
    await publishBakery(dir, [
      { version: "3.50.0", release: "ID=flatcar\nVERSION_ID=9999.0.0\nARCHITECTURE=x86-64\n" },
    ]);
    const other = await startStaticServer(dir);
    try {
      const root = sandbox();
      writeConfig(root, `[source]\nurl = "${other.url}"\n[containerd]\nenabled = false\n`);
      for (const pass of [await daemonOnce(root), await daemonOnce(root)]) {
        expect(pass.code).toBe(1);
        expect(pass.stderr).toMatch(
          /made for another release of the OS \(not linked here\): kata-containers-3\.50\.0-x86-64\.raw \(VERSION_ID: extension has "9999\.0\.0"/,
        );
      }
      expect(other.requests().filter((r) => r.includes(file("3.50.0")))).toHaveLength(1);
    } finally {
      await other.close();
    }
  });

  it("fails with the skipped releases named when no good candidate is left", async () => {
    const dir = join(work, "all-bad");
    await publishBakery(dir, [{ version: "3.33.0" }]);
    writeFileSync(join(dir, "kata-containers", file("3.33.0")), "tampered\n");
    const bad = await startStaticServer(dir);
    try {
      const root = sandbox();
      writeConfig(root, `[source]\nurl = "${bad.url}"\n[containerd]\nenabled = false\n`);
      const ran = await daemonOnce(root);
      expect(ran.code).toBe(1);
      expect(ran.stderr).toMatch(/skipped after failing before: kata-containers-3\.33\.0-x86-64\.raw: .*SHA-256/);
      // /status shows it too: the skipped list is kept although the pass failed.
      expect(state(root).skipped["kata-containers"].map((s: { version: string }) => s.version)).toEqual(["3.33.0"]);
      expect(readdirSync(join(root, "etc/extensions"))).toEqual([]);
    } finally {
      await bad.close();
    }
  });
});
