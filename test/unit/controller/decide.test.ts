// chooseTargets: what a pass wants from what the sources publish and what is stored, without I/O.
import { describe, expect, it } from "vitest";
import { DEFAULTS } from "../../../src/config/schema.ts";
import { chooseTargets, type PublishedSource, Unresolvable } from "../../../src/controller/decide.ts";
import type { JudgedImage, MemberView } from "../../../src/controller/observe.ts";
import { createLogger } from "../../../src/log/logger.ts";
import type { Member, ReleaseSource, Target } from "../../../src/model.ts";
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
}

function choose({ offered, images = [], held = [], quarantined = [] }: Row) {
  const view: MemberView = { name: NAME, link: { kind: "absent" }, images, merged: false };
  const state: PersistedState = { ...EMPTY_STATE, held: held.length > 0 ? { [NAME]: held.map(kata) } : {} };
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
  ])("%s", (_, row, expected) => {
    expect(choose(row).targets.get(NAME)).toEqual(expected);
  });

  it.each<[string, Row, RegExp]>([
    ["nothing published in policy", { offered: ["3.20.0"] }, /no acceptable Kata version/],
    ["everything held", { offered: ["3.32.0"], held: ["3.32.0"] }, /no acceptable Kata version/],
  ])("%s: no set, and why", (_, row, message) => {
    expect(() => choose(row)).toThrow(Unresolvable);
    expect(() => choose(row)).toThrow(message);
  });
});
