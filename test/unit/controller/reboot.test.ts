import { describe, expect, it } from "vitest";
import { decideReboot, duration, type RebootInput, type RebootVerdict } from "../../../src/controller/reboot.ts";

const HOUR = 3_600_000;
const NOW = Date.parse("2026-12-02T12:00:00Z");
const kata = (version: string) => ({ member: "kata-containers", version, primary: true });
const ch = (version: string) => ({ member: "cloud-hypervisor", version, primary: false });

const base: RebootInput = {
  heldBack: [kata("3.32.0")],
  activation: "wait",
  waitingSinceMs: NOW,
  maxWaitSeconds: 86_400,
  nowMs: NOW,
  osUpdate: null,
};

const none = (recheckAfterMs: number | null): RebootVerdict => ({ request: false, recheckAfterMs });
const asks = (reason: string): RebootVerdict => ({ request: true, reason });
const WAITED = "Kata 3.32.0 waited 24 h for running Kata sandboxes to end (policy.max_wait_seconds = 86400)";
const STAGED = 'Kata 3.32.0 is staged and activates at the next boot (policy.activation = "next-boot")';

describe("decideReboot", () => {
  it.each<[string, Partial<RebootInput>, RebootVerdict]>([
    ["nothing held back: no request, nothing to wait for", { heldBack: [] }, none(null)],
    ["wait, the deferral just started: the whole wait is left", {}, none(24 * HOUR)],
    ["wait, 23 h waited: ask again in an hour", { waitingSinceMs: NOW - 23 * HOUR }, none(HOUR)],
    [
      "wait, exactly max_wait_seconds waited: ask",
      { waitingSinceMs: NOW - 24 * HOUR },
      asks(`${WAITED} and activates at the next boot`),
    ],
    [
      "wait, long past it: the same words (a reason that changes would rewrite the sentinel every pass)",
      { waitingSinceMs: NOW - 100 * HOUR },
      asks(`${WAITED} and activates at the next boot`),
    ],
    ["wait with max_wait_seconds = 0: wait forever, never ask", { maxWaitSeconds: 0, waitingSinceMs: 0 }, none(null)],
    [
      "no recorded start yet: the wait starts now",
      { waitingSinceMs: null, maxWaitSeconds: 90 * 60 },
      none(90 * 60 * 1000),
    ],
    [
      "the clock went back past the start: no time waited, not negative time",
      { waitingSinceMs: NOW + 5 * HOUR, maxWaitSeconds: 3600 },
      none(HOUR),
    ],
    [
      "a wait in minutes is said in minutes",
      { waitingSinceMs: NOW - 2 * HOUR, maxWaitSeconds: 5400 },
      asks(
        "Kata 3.32.0 waited 90 min for running Kata sandboxes to end (policy.max_wait_seconds = 5400) and activates at the next boot",
      ),
    ],
    ["next-boot: ask at once", { activation: "next-boot" }, asks(STAGED)],
    ["next-boot ignores max_wait_seconds = 0", { activation: "next-boot", maxWaitSeconds: 0 }, asks(STAGED)],
    ["force never defers, so never asks (a stale record is ignored)", { activation: "force" }, none(null)],
    [
      "Kata and a companion held back together",
      { activation: "next-boot", heldBack: [kata("3.32.0"), ch("53.0")] },
      asks(
        'Kata 3.32.0 and cloud-hypervisor 53.0 are staged and activate at the next boot (policy.activation = "next-boot")',
      ),
    ],
    [
      "a companion alone",
      { activation: "next-boot", heldBack: [ch("53.0")] },
      asks('cloud-hypervisor 53.0 is staged and activates at the next boot (policy.activation = "next-boot")'),
    ],
    [
      "update_engine waits to reboot into a release with Kata staged for it: one reboot serves both",
      { activation: "next-boot", osUpdate: { flatcarVersion: "4650.0.0", kata: "3.33.0", staged: true } },
      asks(
        `Kata 3.33.0 is staged for Flatcar 4650.0.0, which update_engine installed and waits to reboot into: one reboot serves both (${STAGED})`,
      ),
    ],
    [
      "the same after an expired wait",
      {
        waitingSinceMs: NOW - 30 * HOUR,
        osUpdate: { flatcarVersion: "4650.0.0", kata: "3.33.0", staged: true },
      },
      asks(
        `Kata 3.33.0 is staged for Flatcar 4650.0.0, which update_engine installed and waits to reboot into: one reboot serves both (${WAITED} and activates at the next boot)`,
      ),
    ],
    [
      "update_engine waits, nothing staged for its release: asked, and said",
      { activation: "next-boot", osUpdate: { flatcarVersion: "4650.0.0", kata: null, staged: false } },
      asks(`${STAGED}; Flatcar 4650.0.0 also waits for this reboot, and no Kata image is staged for it yet`),
    ],
    [
      "update_engine waits, the wait for sandboxes has not run out: Flatcar's reboot is not ours to ask for",
      { osUpdate: { flatcarVersion: "4650.0.0", kata: "3.33.0", staged: true } },
      none(24 * HOUR),
    ],
  ])("%s", (_, input, expected) => {
    expect(decideReboot({ ...base, ...input })).toEqual(expected);
  });
});

describe("duration", () => {
  it.each([
    [86_400, "24 h"],
    [3600, "1 h"],
    [5400, "90 min"],
    [60, "1 min"],
    [90, "90 s"],
    [1, "1 s"],
  ])("%i s reads %s", (seconds, text) => {
    expect(duration(seconds)).toBe(text);
  });
});
