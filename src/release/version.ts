// Two version orders. compareVersions is systemd's strverscmp_improved (the UAPI Version Format), the order
// systemd-sysupdate and vpick use for image versions. Policy ranges are semver (package semver), with Flatcar
// (4593.2.5) and Kata (3.32.0) versions read as semver where they parse.
// Only the parts used, not the package index: the index loads all of semver (47 modules), on every command.
import type { SemVer } from "semver";
import Range from "semver/classes/range.js";
import parse from "semver/functions/parse.js";

export type Ordering = -1 | 0 | 1;

const isDigit = (c: string): boolean => c >= "0" && c <= "9";
const isAlpha = (c: string): boolean => (c >= "a" && c <= "z") || (c >= "A" && c <= "Z");
const isVersionChar = (c: string): boolean =>
  isDigit(c) || isAlpha(c) || c === "~" || c === "-" || c === "^" || c === ".";
const SEPARATORS = ["-", "^", "."] as const;
const cmp = (a: number | string, b: number | string): Ordering => (a < b ? -1 : a > b ? 1 : 0);

/**
 * strverscmp_improved as systemd implements it. Where the UAPI spec's wording differs (the spec lists
 * '' < '~', 0 < '~', and '^' sorting above everything), systemd wins: `systemd-analyze compare-versions` says '' > '~', 0 > '~' and 123^post1 < 123.a-1, and it is
 * systemd that picks versions on the host. test/integration/release/version-differential.test.ts checks
 * this function against systemd-analyze.
 */
export function compareVersions(left: string, right: string): Ordering {
  const a = left;
  const b = right;
  let i = 0;
  let j = 0;
  const at = (s: string, k: number): string => (k < s.length ? s.charAt(k) : "");
  for (;;) {
    while (i < a.length && !isVersionChar(a.charAt(i))) i++;
    while (j < b.length && !isVersionChar(b.charAt(j))) j++;

    // '~' marks a pre-release: the side that has it is older. This comes before the end-of-string check.
    if (at(a, i) === "~" || at(b, j) === "~") {
      const r = cmp(Number(at(a, i) !== "~"), Number(at(b, j) !== "~"));
      if (r !== 0) return r;
      i++;
      j++;
    }
    // One string ended: the longer one is newer ("" sorts before any character, as NUL does in C).
    if (i >= a.length || j >= b.length) return cmp(at(a, i), at(b, j));

    // Then '-', '^' and '.', in that order: the side with the separator is older than the side without.
    for (const sep of SEPARATORS) {
      if (at(a, i) === sep || at(b, j) === sep) {
        const r = cmp(Number(at(a, i) !== sep), Number(at(b, j) !== sep));
        if (r !== 0) return r;
        i++;
        j++;
      }
    }

    let ii = i;
    let jj = j;
    if (isDigit(at(a, i)) || isDigit(at(b, j))) {
      while (ii < a.length && isDigit(a.charAt(ii))) ii++;
      while (jj < b.length && isDigit(b.charAt(jj))) jj++;
      // A numeric segment is newer than a missing one.
      const r = cmp(Number(ii > i), Number(jj > j));
      if (r !== 0) return r;
      while (a.charAt(i) === "0") i++;
      while (b.charAt(j) === "0") j++;
      const byLength = cmp(ii - i, jj - j);
      if (byLength !== 0) return byLength;
      const byDigits = cmp(a.slice(i, ii), b.slice(j, jj));
      if (byDigits !== 0) return byDigits;
    } else {
      while (ii < a.length && isAlpha(a.charAt(ii))) ii++;
      while (jj < b.length && isAlpha(b.charAt(jj))) jj++;
      const n = Math.min(ii - i, jj - j);
      const byLetters = cmp(a.slice(i, i + n), b.slice(j, j + n));
      if (byLetters !== 0) return byLetters;
      const byLength = cmp(ii - i, jj - j);
      if (byLength !== 0) return byLength;
    }
    i = ii;
    j = jj;
  }
}

const DOTTED_NUMBERS = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?$/;

/**
 * A version as semver, or null. Strict semver first (3.32.0, v3.32.0, 4593.2.5, 4.0.0-rc1), then dotted
 * numbers with missing parts filled in (4593.2 -> 4593.2.0). Unlike semver.coerce or a loose parse this never
 * reads a version out of a longer string: "3.32.0abc" is not 3.32.0.
 */
export function toSemver(version: string): SemVer | null {
  if (version.length > 256) return null;
  const strict = parse(version);
  if (strict !== null) return strict;
  const m = DOTTED_NUMBERS.exec(version);
  if (m === null) return null;
  return parse(`${Number(m[1])}.${Number(m[2] ?? 0)}.${Number(m[3] ?? 0)}`);
}

/**
 * A range that selects (policy.versions, a companion's versions, policy.kernel), or null when `range` is not one.
 * Pre-releases follow semver: they match only when the range names one on the same major.minor.patch, so the
 * operator opts into them.
 */
export function toRange(range: string): Range | null {
  return parseRange(range, false);
}

/**
 * A range that restricts (constraints, withdrawals, requirements), or null. It matches pre-releases too:
 * `kata = ">=4.0.0"` withdraws or constrains 4.1.0-rc1 as well, or an opted-in pre-release would escape it.
 */
export function toRestrictingRange(range: string): Range | null {
  return parseRange(range, true);
}

function parseRange(range: string, includePrerelease: boolean): Range | null {
  try {
    return range.trim() === "" ? null : new Range(range, { includePrerelease });
  } catch {
    return null;
  }
}

/** Whether `version` (read as semver) lies in `range`; false when it does not parse. Pre-releases as the range says. */
export function satisfies(version: string, range: Range): boolean {
  const v = toSemver(version);
  return v !== null && range.test(v);
}
