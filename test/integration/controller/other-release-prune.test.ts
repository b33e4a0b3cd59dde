// Images made for another release of this OS are stored, not linked (admit.ts), and the store stays within
// [policy] keep all the same: they count against keep like any other image, and what was pruned is remembered by
// digest (state.json `otherRelease`), so no pass fetches it again to learn its release anew. Real squashfs images,
// a plain static server (python3 -m http.server on 127.0.0.1), real `kata-sysextd --once` with systemd-sysext 252
// under --root in a private mount namespace.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImage, flatcarRelease } from "../../helpers/images.ts";
import { publishRelease } from "../../helpers/release-server.ts";
import { daemonOnce, makeSandboxRoot, writeConfig } from "../../helpers/sandbox.ts";
import { type StaticServer, startStaticServer } from "../../helpers/static-server.ts";

const LINK = "etc/extensions/kata-containers.raw";
const STORE = "var/lib/kata-sysextd/images";
const STATE = "var/lib/kata-sysextd/state.json";
const file = (version: string) => `kata-containers-${version}-x86-64.raw`;
/** Six releases built for an older Flatcar than the sandbox's 4593.2.5, as the reviewer published them. */
const OLDER = ["3.40.0", "3.41.0", "3.42.0", "3.43.0", "3.44.0", "3.45.0"];
/** Five releases for SYSEXT_LEVEL 1.0, on a host that says SYSEXT_LEVEL=3.0. */
const LEVEL_ONE = ["3.40.0", "3.41.0", "3.42.0", "3.43.0", "3.44.0"];

let work = "";
const servers: StaticServer[] = [];
const roots: string[] = [];

async function serve(name: string, images: { version: string; release: string }[]): Promise<StaticServer> {
  const dir = join(work, name);
  mkdirSync(dir);
  await publishRelease(dir, {
    images: images.map(({ version, release }) => ({
      version,
      content: buildImage({ version, extensionRelease: release }, join(work, "build", name, `${version}.raw`)),
    })),
  });
  const server = await startStaticServer(dir);
  servers.push(server);
  return server;
}

function sandbox(server: StaticServer): string {
  const root = makeSandboxRoot("4593.2.5");
  roots.push(root);
  writeConfig(root, `[source]\nurl = "${server.url}"\n[policy]\nkeep = 1\n[containerd]\nenabled = false\n`);
  return root;
}

const stored = (root: string) =>
  readdirSync(join(root, STORE))
    .filter((f) => f.endsWith(".raw"))
    .sort();
const state = (root: string) => JSON.parse(readFileSync(join(root, STATE), "utf8"));
/** How often each published image was fetched, by version. */
const fetches = (server: StaticServer, versions: string[]) =>
  Object.fromEntries(versions.map((v) => [v, server.requests().filter((r) => r.includes(`/${file(v)} `)).length]));
const once = (versions: string[]) => Object.fromEntries(versions.map((v) => [v, 1]));

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "kata-other-release-"));
});

afterAll(async () => {
  for (const server of servers) await server.close();
  for (const root of roots) rmSync(root, { recursive: true, force: true });
  if (work !== "") rmSync(work, { recursive: true, force: true });
});

describe("images made for another release of the OS, with [policy] keep = 1", () => {
  it("keeps the store at the active image and one other, and fetches none of them again", async () => {
    const server = await serve("older", [
      ...OLDER.map((version) => ({ version, release: flatcarRelease("4000.0.0") })),
      { version: "3.31.1", release: flatcarRelease("4593.2.5") },
    ]);
    const root = sandbox(server);
    const all = [...OLDER, "3.31.1"];

    // Each candidate is fetched to learn its release (by design), found to be for 4000.0.0 and stored; the pass
    // decides again and prunes as it goes, so the store never holds more than keep of them beside the active one.
    const first = await daemonOnce(root);
    expect(first.code, first.stderr).toBe(0);
    expect(readlinkSync(join(root, LINK))).toBe(`../../${STORE}/${file("3.31.1")}`);
    expect(fetches(server, all)).toEqual(once(all));
    expect(first.stderr).toContain("made for another flatcar release than 4593.2.5");
    expect(first.stderr).toMatch(/pruned kata-containers-3\.44\.0-x86-64\.raw/);
    // The newest of them stays (keep = 1), beside the active image.
    expect(stored(root)).toEqual([file("3.31.1"), file("3.45.0")]);
    // All six remembered by the digest SHA256SUMS gave them, with the release they were found to be for.
    const remembered = state(root).otherRelease["kata-containers"] as { version: string; extensionRelease: string }[];
    expect(remembered.map((r) => r.version).sort()).toEqual(OLDER);
    for (const r of remembered) expect(r.extensionRelease).toContain("VERSION_ID=4000.0.0");

    // The second pass fetches nothing (the pruned ones included), moves nothing, and the store stays bounded.
    const before = server.requests().length;
    const second = await daemonOnce(root);
    expect(second.code, second.stderr).toBe(0);
    expect(fetches(server, all)).toEqual(once(all));
    expect(
      server
        .requests()
        .slice(before)
        .filter((r) => r.includes(".raw")),
    ).toEqual([]);
    expect(second.stderr).not.toContain("activated");
    expect(second.stderr).not.toContain("verified and stored");
    expect(stored(root)).toEqual([file("3.31.1"), file("3.45.0")]);
  });

  it("on a host of another SYSEXT_LEVEL: keeps one, fetches none again, and says what SHA256SUMS lists", async () => {
    const server = await serve(
      "level",
      LEVEL_ONE.map((version) => ({ version, release: "ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE=x86-64\n" })),
    );
    const root = sandbox(server);
    writeFileSync(
      join(root, "usr/lib/os-release"),
      "NAME=Flatcar\nID=flatcar\nVERSION_ID=4593.2.5\nSYSEXT_LEVEL=3.0\nFLATCAR_BOARD=amd64-usr\n",
    );

    // Every image has to be fetched once to learn its level; none can be linked, so the pass fails, and says why.
    const first = await daemonOnce(root);
    expect(first.code).toBe(1);
    expect(fetches(server, LEVEL_ONE)).toEqual(once(LEVEL_ONE));
    expect(first.stderr).toContain(
      "SHA256SUMS lists 5 kata-containers images for x86-64, none of which may be tried here, and the 2 kata-containers images installed may not be linked here",
    );
    expect(first.stderr).not.toContain("lists no kata-containers image");
    expect(first.stderr).toMatch(
      /made for another release of the OS \(not linked here\): kata-containers-3\.40\.0-x86-64\.raw \(SYSEXT_LEVEL: extension has "1\.0", host has "3\.0"\); kata-containers-3\.41\.0-x86-64\.raw \(SYSEXT_LEVEL: .*; pruned, not fetched again\)/,
    );
    // A failed pass prunes too: the store holds keep = 1 of them, the newest.
    expect(stored(root)).toEqual([file("3.44.0")]);
    expect(readdirSync(join(root, "etc/extensions"))).toEqual([]);

    const second = await daemonOnce(root);
    expect(second.code).toBe(1);
    expect(fetches(server, LEVEL_ONE)).toEqual(once(LEVEL_ONE));
    expect(second.stderr).toContain(
      "SHA256SUMS lists 5 kata-containers images for x86-64, none of which may be tried here, and the 1 kata-containers image installed may not be linked here",
    );
    expect(stored(root)).toEqual([file("3.44.0")]);
  });
});
