// chooseTargets: what a pass wants from what the sources publish and what is stored, without I/O.
import { describe, expect, it } from "vitest";
import { DEFAULTS } from "../../../src/config/schema.ts";
import { chooseTargets, type PublishedSource, Unresolvable } from "../../../src/controller/decide.ts";
import type { JudgedImage, MemberView } from "../../../src/controller/observe.ts";
import { createLogger } from "../../../src/log/logger.ts";
import type { Member, OtherReleaseImage, ReleaseSource, Target } from "../../../src/model.ts";
import { parseManifest } from "../../../src/release/manifest.ts";
import { parseHostRelease } from "../../../src/release/os-release.ts";
import { ActiveLink } from "../../../src/store/link.ts";
import { EMPTY_STATE, type PersistedState } from "../../../src/store/state.ts";

const NAME = "kata-containers";
const kata = (v: string) => `${NAME}-${v}-x86-64.raw`;
const sha = (v: string) => Buffer.from(v).toString("hex").padEnd(64, "0").slice(0, 64);
const host = parseHostRelease("ID=flatcar\nID_LIKE=coreos\nVERSION_ID=4593.2.5\nSYSEXT_LEVEL=1.0\n");
const URL_BASE = "http://127.0.0.1/ext/";

const source: ReleaseSource = {
  trust: "checksum",
  manifest: () => Promise.reject(new Error("not read here")),
  imageUrl: (file) => `${URL_BASE}${file}`,
  download: () => Promise.reject(new Error("not fetched here")),
};
const member: Member = {
  name: NAME,
  primary: true,
  link: new ActiveLink("/nonexistent/etc/extensions/kata-containers.raw", "/nonexistent/store"),
  source,
  versions: DEFAULTS.policy.versions,
};

const stored = (v: string, compatible = true): JudgedImage => ({
  file: kata(v),
  name: NAME,
  version: v,
  arch: "x86-64",
  sha256: sha(v),
  bytes: 1,
  trust: "checksum",
  verifiedAt: "2026-12-02T00:00:00.000Z",
  // Judged again for the host the decision is for: one for another release names that release.
  extensionRelease: compatible ? "ID=_any\n" : "ID=flatcar\nVERSION_ID=4650.0.0\n",
  kataConfigs: [],
  files: [],
  path: `/nonexistent/store/${kata(v)}`,
  compatible,
  reasons: compatible ? [] : ["VERSION_ID differs"],
});

function published(versions: string[], quarantined: string[] = []): PublishedSource {
  const text = versions.map((v) => `${sha(v)}  ${kata(v)}\n`).join("");
  return {
    member,
    manifest: { text, trust: "checksum", metadata: null, metadataUnavailable: null },
    parsed: parseManifest(text),
    quarantined: new Set(quarantined.map((v) => `${kata(v)}@${sha(v)}`)),
  };
}

interface Row {
  offered: string[];
  images?: JudgedImage[];
  held?: string[];
  quarantined?: string[];
  /** Fetched before as made for another release and pruned since (state.json `otherRelease`). */
  remembered?: OtherReleaseImage[];
}

/** An image fetched before, remembered with the extension-release it was found to have. */
const fetchedBefore = (v: string, versionId: string): OtherReleaseImage => ({
  file: kata(v),
  version: v,
  sha256: sha(v),
  extensionRelease: `ID=flatcar\nVERSION_ID=${versionId}\n`,
});

function choose({ offered, images = [], held = [], quarantined = [], remembered = [] }: Row) {
  const view: MemberView = { name: NAME, link: { kind: "absent" }, images, merged: false };
  const state: PersistedState = {
    ...EMPTY_STATE,
    held: held.length > 0 ? { [NAME]: held.map(kata) } : {},
    otherRelease: remembered.length > 0 ? { [NAME]: remembered } : {},
  };
  const ctx = {
    config: DEFAULTS,
    arch: "x86-64",
    members: [member],
    log: createLogger(() => undefined),
    now: new Date("2026-12-02T08:00:00.000Z"),
  };
  return chooseTargets(ctx, host, { members: [view], state }, [published(offered, quarantined)], undefined);
}

const remote = (v: string): Target => ({
  version: v,
  file: kata(v),
  remote: { url: `${URL_BASE}${kata(v)}`, sha256: sha(v) },
});
const local = (v: string): Target => ({ version: v, file: kata(v), remote: null });

describe("chooseTargets", () => {
  it.each<[string, Row, Target]>([
    ["the newest published version in policy, to fetch", { offered: ["3.30.0", "3.32.0", "3.31.1"] }, remote("3.32.0")],
    ["a stored image is not fetched again", { offered: ["3.32.0"], images: [stored("3.32.0")] }, local("3.32.0")],
    [
      "a held release is passed over for the next newest",
      { offered: ["3.30.0", "3.32.0"], held: ["3.32.0"] },
      remote("3.30.0"),
    ],
    ["quarantined bytes are passed over", { offered: ["3.30.0", "3.32.0"], quarantined: ["3.32.0"] }, remote("3.30.0")],
    [
      "one stored as made for another OS release is passed over",
      { offered: ["3.30.0", "3.32.0"], images: [stored("3.32.0", false)] },
      remote("3.30.0"),
    ],
    [
      "one fetched before as made for another OS release and pruned since is passed over, not fetched again",
      { offered: ["3.30.0", "3.32.0"], remembered: [fetchedBefore("3.32.0", "4000.0.0")] },
      remote("3.30.0"),
    ],
    [
      "one fetched before for the release now booted is fetched again: it matches this host",
      { offered: ["3.30.0", "3.32.0"], remembered: [fetchedBefore("3.32.0", "4593.2.5")] },
      remote("3.32.0"),
    ],
    [
      "remembered bytes other than those published now are no verdict on these",
      {
        offered: ["3.30.0", "3.32.0"],
        remembered: [{ ...fetchedBefore("3.32.0", "4000.0.0"), sha256: "f".repeat(64) }],
      },
      remote("3.32.0"),
    ],
  ])("%s", (_, row, expected) => {
    expect(choose(row).targets.get(NAME)).toEqual(expected);
  });

  it("remembers what it stores for another release by digest, and keeps in mind what it pruned", () => {
    const records = choose({
      offered: ["3.30.0", "3.32.0", "3.33.0"],
      images: [stored("3.33.0", false)],
      remembered: [fetchedBefore("3.32.0", "4000.0.0"), fetchedBefore("3.10.0", "4000.0.0")],
    }).candidates.get(NAME);
    // 3.10.0 is no longer published: forgotten.
    expect(records?.otherRelease.map((i) => i.version)).toEqual(["3.32.0", "3.33.0"]);
    expect(records?.otherRelease.find((i) => i.version === "3.33.0")).toEqual({
      file: kata("3.33.0"),
      version: "3.33.0",
      sha256: sha("3.33.0"),
      extensionRelease: "ID=flatcar\nVERSION_ID=4650.0.0\n",
    });
    expect(records?.skipped).toEqual([]);
  });

  it.each<[string, Row, RegExp]>([
    ["nothing published in policy", { offered: ["3.20.0"] }, /no acceptable Kata version/],
    ["everything held", { offered: ["3.32.0"], held: ["3.32.0"] }, /no acceptable Kata version/],
    [
      // What a host with another SYSEXT_LEVEL saw: five listed, four stored for another release, one failed.
      "everything listed left out: says so, and names the ones for another release",
      {
        offered: ["3.40.0", "3.41.0", "3.42.0", "3.43.0", "3.44.0"],
        images: ["3.41.0", "3.42.0", "3.43.0", "3.44.0"].map((v) => stored(v, false)),
        quarantined: ["3.40.0"],
      },
      /^no acceptable Kata version: SHA256SUMS lists 5 kata-containers images for x86-64, none of which may be tried here, and the 4 kata-containers images installed may not be linked here; .*made for another release of the OS \(not linked here\): kata-containers-3\.41\.0-x86-64\.raw \(VERSION_ID: extension has "4650\.0\.0"/,
    ],
    [
      "one pruned since is named as such",
      { offered: ["3.32.0"], remembered: [fetchedBefore("3.32.0", "4000.0.0")] },
      /SHA256SUMS lists 1 kata-containers image for x86-64, none of which may be tried here, and none is installed; made for another release of the OS \(not linked here\): kata-containers-3\.32\.0-x86-64\.raw \(VERSION_ID: extension has "4000\.0\.0", host has "4593\.2\.5".*; pruned, not fetched again\)/,
    ],
  ])("%s: no set, and why", (_, row, message) => {
    expect(() => choose(row)).toThrow(Unresolvable);
    expect(() => choose(row)).toThrow(message);
  });
});
