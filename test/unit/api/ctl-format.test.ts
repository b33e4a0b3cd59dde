// kata-sysextctl's human output, as pure functions of the daemon's answers.
import { describe, expect, it } from "vitest";
import { describeDownload, formatStatus } from "../../../src/cli/ctl-client.ts";
import { CANARY_PASSED, statusDoc } from "../../integration/api/fixtures.ts";

const MiB = 1024 * 1024;

describe("describeDownload", () => {
  it.each([
    [{ bytes: 12 * MiB, total: 30 * MiB, bytesPerSecond: 3 * MiB }, "12.0 MiB of 30.0 MiB (40%), 3.0 MiB/s, ETA 6s"],
    [{ bytes: 0, total: 600 * MiB, bytesPerSecond: MiB }, "0.0 KiB of 600.0 MiB (0%), 1.0 MiB/s, ETA 10m00s"],
    [{ bytes: 512 * 1024, total: null, bytesPerSecond: 0 }, "512.0 KiB"],
    [{ bytes: 5 * MiB, total: 10 * MiB, bytesPerSecond: 0 }, "5.0 MiB of 10.0 MiB (50%)"],
    [{ bytes: 1, total: 7200 * MiB, bytesPerSecond: 1024 * 1024 }, "0.0 KiB of 7200.0 MiB (0%), 1.0 MiB/s, ETA 2h00m"],
  ])("%o", (d, expected) => {
    expect(describeDownload({ file: "k.raw", ...d })).toBe(expected);
  });
});

describe("formatStatus", () => {
  it.each([
    ["active and merged", { active: "44.0", merged: true }, "  companion  cloud-hypervisor 44.0: active, merged\n"],
    ["not merged", { active: "44.0", merged: false }, "  companion  cloud-hypervisor 44.0: active, NOT merged\n"],
    ["nothing active", { active: null, merged: false }, "  companion  cloud-hypervisor: no image active\n"],
  ])("shows a companion %s", (_, state, line) => {
    const companion = { name: "cloud-hypervisor", previous: null, nextBoot: null, held: [], ...state };
    const doc = statusDoc();
    expect(formatStatus({ ...doc, members: [...doc.members, companion] })).toContain(line);
  });

  it("summarises a healthy node in a few lines", () => {
    expect(formatStatus(statusDoc())).toBe(
      [
        "kata-containers 3.32.0: active, merged (verified by checksum)",
        "  image      /var/lib/kata-sysextd/images/kata-containers-3.32.0-x86-64.raw",
        "  host       flatcar 4593.2.5, x86-64, sysext level 1.0",
        "  next boot  flatcar 4650.0.0: kata 3.32.0 staged",
        "  preflight  ok, 1 warning",
        "    qemu: ready (1 warning)",
        "  containerd runtimes merged into /usr/share/containerd/config.toml",
        "    kata: registered",
        "    kata-qemu-tdx: not registered: kvm_intel parameter tdx is absent, not Y",
        "  canary     kata passed (kata-containers-3.32.0-x86-64.raw, 1200 ms, 2026-11-26T18:01:00.000Z)",
        "  held       kata-containers 3.33.0: rolled back from, skipped until refresh --release-holds",
        "  state      idle; last reconcile ok at 2026-11-26T18:01:00.000Z",
        "",
      ].join("\n"),
    );
  });

  it("names the companions staged for the next OS release beside Kata", () => {
    const doc = statusDoc();
    const ch = { name: "cloud-hypervisor", active: "v53.0", previous: null, merged: true, held: [] };
    const staged = [...doc.members, { ...ch, nextBoot: "v54.0" }, { ...ch, name: "virtiofsd", nextBoot: null }];
    expect(formatStatus({ ...doc, members: staged })).toContain(
      "  next boot  flatcar 4650.0.0: kata 3.32.0, cloud-hypervisor v54.0 staged\n",
    );
  });

  it("lists what staging for the next OS release skipped, under its row", () => {
    const skipped = {
      member: "kata-containers",
      version: "3.33.0",
      file: "k.raw",
      reason: "SHA-256 is a, SHA256SUMS says b",
    };
    const next = { flatcarVersion: "4650.0.0", kata: "3.32.0", staged: true, reason: null };
    const retry = "2026-12-02T10:00:00.000Z";
    expect(formatStatus(statusDoc({ nextBoot: { ...next, skipped: [{ ...skipped, retryAt: retry }] } }))).toContain(
      "  next boot  flatcar 4650.0.0: kata 3.32.0 staged\n" +
        `    skipped for flatcar 4650.0.0: kata-containers 3.33.0: SHA-256 is a, SHA256SUMS says b (tried again after ${retry})\n`,
    );
  });

  it("shows a rejected configuration with its remedy, and says the previous one runs", () => {
    const rejected = {
      at: "2026-12-02T11:00:00.000Z",
      code: "config-invalid",
      message: '/etc/kata-sysextd/config.toml:3: key "policy.versions" must be a semver range',
      remedy: "fix the line",
    };
    const text = formatStatus(statusDoc({ configRejected: rejected, state: "degraded" }));
    expect(text).toContain(
      `  config     REJECTED at 2026-12-02T11:00:00.000Z, the previous one runs: ${rejected.message} (config-invalid)\n` +
        "  remedy     fix the line\n",
    );
    expect(formatStatus(statusDoc())).not.toContain("  config ");
  });

  it("says what waits for Kata sandboxes, since when, and when a reboot is asked for", () => {
    const waiting = {
      members: [{ name: "kata-containers", version: "3.33.0", file: "kata-containers-3.33.0-x86-64.raw" }],
      sandboxes: 2,
      since: "2026-12-02T10:00:00.000Z",
      rebootAt: "2026-12-03T10:00:00.000Z",
    };
    const lastReconcile = {
      at: "2026-12-02T10:30:00.000Z",
      result: "deferred" as const,
      error: "Kata 3.33.0 waits: 2 Kata sandboxes running",
      remedy: "it activates once the last Kata sandbox has ended",
    };
    const text = formatStatus(statusDoc({ waiting, lastReconcile }));
    expect(text).toContain(
      "  waiting    kata-containers 3.33.0, for 2 Kata sandboxes to end, since 2026-12-02T10:00:00.000Z; a reboot is asked for at 2026-12-03T10:00:00.000Z if they still run\n",
    );
    expect(text).toContain(
      "  deferred   Kata 3.33.0 waits: 2 Kata sandboxes running\n  remedy     it activates once the last Kata sandbox has ended\n",
    );
    expect(formatStatus(statusDoc({ waiting: { ...waiting, sandboxes: 1, rebootAt: null } }))).toContain(
      "  waiting    kata-containers 3.33.0, for 1 Kata sandbox to end, since 2026-12-02T10:00:00.000Z\n",
    );
    expect(formatStatus(statusDoc())).not.toContain("waiting");
  });

  it("says when the canary is off, and why one failed", () => {
    expect(formatStatus(statusDoc({ canary: { handler: null, results: [] } }))).toContain("  canary     off\n");
    const failed = { ...CANARY_PASSED, outcome: "failed" as const, step: "timeout", reason: "no exit within 60 s" };
    expect(formatStatus(statusDoc({ canary: { handler: "kata", results: [failed] } }))).toContain(
      "  canary     kata FAILED at timeout: no exit within 60 s (kata-containers-3.32.0-x86-64.raw, 1200 ms,",
    );
  });

  it("says what is missing on a fresh node with a download running", () => {
    const doc = statusDoc({
      nextBoot: null,
      preflight: null,
      lastReconcile: null,
      state: "fetching",
      download: { file: "k.raw", bytes: MiB, total: 2 * MiB, bytesPerSecond: MiB },
    });
    const text = formatStatus({ ...doc, extension: { ...doc.extension, active: null, merged: false, image: null } });
    expect(text).toContain("kata-containers: no image active\n");
    expect(text).toContain("next boot  no OS update pending");
    expect(text).toContain("preflight  not run yet");
    expect(text).toContain("download   k.raw: 1.0 MiB of 2.0 MiB (50%), 1.0 MiB/s, ETA 1s");
    expect(text).toContain("state      fetching; no reconcile yet");
  });

  it.each([
    [
      { path: "/run/reboot-required", owner: "kata-sysextd" as const },
      "  reboot     REQUESTED since 2026-12-01T10:00:00.000Z (/run/reboot-required): Kata 3.32.1 is staged and activates at the next boot",
    ],
    [
      { path: "/run/reboot-required", owner: "other" as const },
      "  reboot     REQUESTED since 2026-12-01T10:00:00.000Z (/run/reboot-required, written by another package): Kata 3.32.1 is staged and activates at the next boot",
    ],
    [
      null,
      "  reboot     REQUESTED since 2026-12-01T10:00:00.000Z (no sentinel configured): Kata 3.32.1 is staged and activates at the next boot",
    ],
  ])("shows a standing reboot request and what carries it (%o)", (sentinel, line) => {
    const reboot = {
      requested: true,
      reason: "Kata 3.32.1 is staged and activates at the next boot",
      since: "2026-12-01T10:00:00.000Z",
      sentinel,
    };
    expect(formatStatus(statusDoc({ reboot })).split("\n")).toContain(line);
  });

  it("names the limitation when the image is active but not merged", () => {
    const doc = statusDoc();
    const text = formatStatus({
      ...doc,
      extension: { ...doc.extension, merged: false, limitation: "systemd-sysext 252 ignores symlinks under --root" },
    });
    expect(text.split("\n")[0]).toBe(
      "kata-containers 3.32.0: active, NOT merged (systemd-sysext 252 ignores symlinks under --root) (verified by checksum)",
    );
  });
});
