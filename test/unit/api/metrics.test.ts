// The metrics registry: typed event methods and gauges derived from the status document, read back through
// prom-client's own text exposition.
import { describe, expect, it } from "vitest";
import { createMetrics } from "../../../src/api/metrics.ts";
import { PREFLIGHT, statusSnapshot } from "../../integration/api/fixtures.ts";

/** The value of one series in the text exposition, or undefined when it is absent. */
function series(text: string, name: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe("createMetrics", () => {
  it("reports the process's own resources when scraped", async () => {
    const text = await createMetrics().render();
    expect(series(text, "process_resident_memory_bytes")).toBeGreaterThan(10 * 1024 * 1024);
    expect(series(text, "process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(text).toContain("# TYPE process_cpu_seconds_total counter");
    expect(series(text, "process_start_time_seconds")).toBeLessThanOrEqual(Date.now() / 1000);
    expect(series(text, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
  });

  it("exposes zero-valued counters before any event, on its own registry", async () => {
    const a = createMetrics({ processMetrics: false });
    const b = createMetrics({ processMetrics: false });
    a.rolledBack();
    const text = await b.render();
    expect(series(text, "kata_sysextd_rollbacks_total")).toBe(0);
    expect(series(text, 'kata_sysextd_reconcile_total{result="failed"}')).toBe(0);
    expect(series(await a.render(), "kata_sysextd_rollbacks_total")).toBe(1);
    expect(a.contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
  });

  it("counts reconciles by result with their durations, downloads, failures and rollbacks", async () => {
    const m = createMetrics({ processMetrics: false });
    m.reconciled("ok", 1.5);
    m.reconciled("ok", 0.2);
    m.reconciled("failed", 30);
    m.downloadBytes(1000);
    m.downloadBytes(24);
    m.downloadBytes(-5);
    m.downloadFailed("fetch-timeout");
    m.downloadFailed("fetch-timeout");
    m.verificationFailed();
    m.verificationFailed("signature-invalid");
    m.rolledBack();
    const text = await m.render();
    expect(series(text, 'kata_sysextd_reconcile_total{result="ok"}')).toBe(2);
    expect(series(text, 'kata_sysextd_reconcile_total{result="failed"}')).toBe(1);
    expect(series(text, 'kata_sysextd_reconcile_duration_seconds_count{result="ok"}')).toBe(2);
    expect(series(text, 'kata_sysextd_reconcile_duration_seconds_sum{result="ok"}')).toBe(1.7);
    expect(series(text, 'kata_sysextd_reconcile_duration_seconds_bucket{le="0.25",result="ok"}')).toBe(1);
    expect(series(text, "kata_sysextd_download_bytes_total")).toBe(1024);
    expect(series(text, 'kata_sysextd_download_failures_total{reason="fetch-timeout"}')).toBe(2);
    expect(series(text, 'kata_sysextd_verification_failures_total{reason="digest-mismatch"}')).toBe(1);
    expect(series(text, 'kata_sysextd_verification_failures_total{reason="signature-invalid"}')).toBe(1);
    expect(series(text, "kata_sysextd_rollbacks_total")).toBe(1);
  });

  it("derives info, state, preflight (by hypervisor), member and next-boot gauges from the status, replacing stale series", async () => {
    const m = createMetrics({ processMetrics: false });
    m.setStatus(statusSnapshot());
    let text = await m.render();
    expect(
      series(text, 'kata_sysextd_kata_active_info{name="kata-containers",version="3.32.0",trust="checksum"}'),
    ).toBe(1);
    expect(
      series(text, 'kata_sysextd_preflight_check_status{check="vhost-vsock",hypervisor="qemu",status="warn"}'),
    ).toBe(1);
    expect(
      series(text, 'kata_sysextd_preflight_check_status{check="vhost-vsock",hypervisor="qemu",status="pass"}'),
    ).toBe(0);
    expect(series(text, 'kata_sysextd_preflight_check_status{check="kvm-usable",hypervisor="",status="pass"}')).toBe(1);
    expect(
      series(
        text,
        'kata_sysextd_member_info{member="kata-containers",active="3.32.0",previous="3.31.0",next_boot="3.32.0"}',
      ),
    ).toBe(1);
    expect(series(text, 'kata_sysextd_member_merged{member="kata-containers"}')).toBe(1);
    expect(series(text, 'kata_sysextd_state{state="idle"}')).toBe(1);
    expect(series(text, "kata_sysextd_next_boot_staged")).toBe(1);

    const doc = statusSnapshot({
      state: "degraded",
      nextBoot: null,
      preflight: { ...PREFLIGHT, checks: [{ id: "kvm-usable", status: "fail", detail: "gone" }] },
    });
    const [kata, ...companions] = doc.members;
    m.setStatus({ ...doc, members: [{ ...kata, active: null, merged: false }, ...companions] });
    text = await m.render();
    expect(text).not.toContain("kata_sysextd_kata_active_info{");
    expect(text).not.toContain('check="vhost-vsock"');
    expect(text).not.toContain("kata_sysextd_next_boot_info{");
    expect(series(text, 'kata_sysextd_preflight_check_status{check="kvm-usable",hypervisor="",status="fail"}')).toBe(1);
    expect(series(text, 'kata_sysextd_state{state="idle"}')).toBe(0);
    expect(series(text, 'kata_sysextd_state{state="degraded"}')).toBe(1);
    expect(series(text, "kata_sysextd_extension_merged")).toBe(0);
    expect(series(text, "kata_sysextd_next_boot_pending")).toBe(0);
    expect(series(text, "kata_sysextd_next_boot_staged")).toBe(0);
  });

  it("shows a standing reboot request and since when, so an alert can catch one nobody honours", async () => {
    const m = createMetrics({ processMetrics: false });
    m.setStatus(statusSnapshot());
    let text = await m.render();
    expect(series(text, "kata_sysextd_reboot_requested")).toBe(0);
    expect(series(text, "kata_sysextd_reboot_requested_since_seconds")).toBe(0);
    const reboot = {
      requested: true,
      reason: "Kata 3.32.0 is staged and activates at the next boot",
      since: "2026-12-01T10:00:00.500Z",
      sentinel: { path: "/run/reboot-required", owner: "kata-sysextd" as const },
    };
    m.setStatus(statusSnapshot({ reboot }));
    text = await m.render();
    expect(series(text, "kata_sysextd_reboot_requested")).toBe(1);
    expect(series(text, "kata_sysextd_reboot_requested_since_seconds")).toBe(Date.parse("2026-12-01T10:00:00Z") / 1000);
  });

  it("shows a rejected configuration as 1 until it is over, so an alert catches it before the next restart does", async () => {
    const m = createMetrics({ processMetrics: false });
    m.setStatus(statusSnapshot());
    expect(series(await m.render(), "kata_sysextd_config_rejected")).toBe(0);
    const configRejected = { at: "2026-12-02T11:00:00.000Z", code: "config-invalid", message: "m", remedy: null };
    m.setStatus(statusSnapshot({ configRejected }));
    expect(series(await m.render(), "kata_sysextd_config_rejected")).toBe(1);
    m.setStatus(statusSnapshot());
    expect(series(await m.render(), "kata_sysextd_config_rejected")).toBe(0);
  });
});
