// Prometheus metrics on a registry of our own (never prom-client's global one, so tests and a second API
// instance do not collide). The reconciler reports events through the typed methods; everything that is a
// property of the current status (versions, preflight, next boot) is derived from the status document.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ErrorCode } from "../errors.ts";
import type { CanaryStatus, CheckStatus, StatusSnapshot } from "../status.ts";
import { DAEMON_STATES } from "./schemas.ts";

export type ReconcileResult = "ok" | "failed" | "deferred";

export interface Metrics {
  /** The Content-Type of render(): text/plain; version=0.0.4; charset=utf-8. */
  readonly contentType: string;
  reconciled(result: ReconcileResult, seconds: number): void;
  downloadBytes(n: number): void;
  downloadFailed(reason: ErrorCode): void;
  verificationFailed(reason?: ErrorCode): void;
  rolledBack(): void;
  /** A canary ran: its duration by handler and outcome, and a failure by the step that failed. */
  canaryRan(result: CanaryStatus): void;
  /** Derives the info, preflight, state and next-boot gauges from the document; cheap, call it on every change. */
  setStatus(doc: StatusSnapshot): void;
  /** The Prometheus text exposition of every metric. */
  render(): Promise<string>;
}

export interface MetricsOptions {
  /** process_resident_memory_bytes, process_cpu_seconds_total, … (default true). */
  processMetrics?: boolean;
}

const CHECK_STATUSES: readonly CheckStatus[] = ["pass", "warn", "fail", "skip"];

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  if (options.processMetrics !== false) registerProcessMetrics(registers);

  const kataInfo = new Gauge({
    name: "kata_sysextd_kata_active_info",
    help: "The active Kata Containers extension image (always 1; absent when none is active)",
    labelNames: ["name", "version", "trust"] as const,
    registers,
  });
  const merged = new Gauge({
    name: "kata_sysextd_extension_merged",
    help: "1 when systemd-sysext has the Kata extension merged into /usr and /opt",
    registers,
  });
  const hostInfo = new Gauge({
    name: "kata_sysextd_host_info",
    help: "The booted OS from os-release (always 1)",
    labelNames: ["id", "version_id", "sysext_level", "arch"] as const,
    registers,
  });
  const state = new Gauge({
    name: "kata_sysextd_state",
    help: "1 for the daemon's current state, 0 for the others",
    labelNames: ["state"] as const,
    registers,
  });
  const reconciles = new Counter({
    name: "kata_sysextd_reconcile_total",
    help: "Reconcile passes by result",
    labelNames: ["result"] as const,
    registers,
  });
  const reconcileSeconds = new Histogram({
    name: "kata_sysextd_reconcile_duration_seconds",
    help: "How long a reconcile pass took, by result",
    labelNames: ["result"] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
    registers,
  });
  const downloaded = new Counter({
    name: "kata_sysextd_download_bytes_total",
    help: "Bytes of extension images downloaded",
    registers,
  });
  const downloadFailures = new Counter({
    name: "kata_sysextd_download_failures_total",
    help: "Failed downloads by reason (error code)",
    labelNames: ["reason"] as const,
    registers,
  });
  const verificationFailures = new Counter({
    name: "kata_sysextd_verification_failures_total",
    help: "Images rejected by checksum or signature verification, by reason",
    labelNames: ["reason"] as const,
    registers,
  });
  const preflightCheck = new Gauge({
    name: "kata_sysextd_preflight_check_status",
    help: "1 for each preflight check's current status, 0 for its other statuses (hypervisor empty when general)",
    labelNames: ["check", "hypervisor", "status"] as const,
    registers,
  });
  const memberInfo = new Gauge({
    name: "kata_sysextd_member_info",
    help: "Each managed extension (Kata and its companions) with its active, previous and next-boot versions (always 1)",
    labelNames: ["member", "active", "previous", "next_boot"] as const,
    registers,
  });
  const memberMerged = new Gauge({
    name: "kata_sysextd_member_merged",
    help: "1 when systemd-sysext has this member merged",
    labelNames: ["member"] as const,
    registers,
  });
  const rollbacks = new Counter({
    name: "kata_sysextd_rollbacks_total",
    help: "Times the previous images were re-activated: on request, or after an activation failed",
    registers,
  });
  const nextBootPending = new Gauge({
    name: "kata_sysextd_next_boot_pending",
    help: "1 when an OS update is pending a reboot",
    registers,
  });
  const nextBootStaged = new Gauge({
    name: "kata_sysextd_next_boot_staged",
    help: "1 when a Kata image compatible with the pending OS update is staged",
    registers,
  });
  const nextBootInfo = new Gauge({
    name: "kata_sysextd_next_boot_info",
    help: "The pending OS update and the Kata version staged for it (always 1; absent when none is pending)",
    labelNames: ["flatcar_version", "kata"] as const,
    registers,
  });
  const rebootRequested = new Gauge({
    name: "kata_sysextd_reboot_requested",
    help: "1 while kata-sysextd asks the cluster's reboot coordinator for a reboot of this node (an activation waits for it)",
    registers,
  });
  const rebootRequestedSince = new Gauge({
    name: "kata_sysextd_reboot_requested_since_seconds",
    help: "When the reboot request was first made, in Unix seconds (0 while none stands); alert on time() minus this",
    registers,
  });
  const configRejected = new Gauge({
    name: "kata_sysextd_config_rejected",
    help: "1 while the configuration file, as last read on a change or reload, was rejected and the daemon runs the one it had (a restart would read the rejected file)",
    registers,
  });

  const canarySeconds = new Histogram({
    name: "kata_sysextd_canary_duration_seconds",
    help: "How long a canary container took from start to removal, by runtime handler and outcome",
    labelNames: ["handler", "outcome"] as const,
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120],
    registers,
  });
  const canaryFailures = new Counter({
    name: "kata_sysextd_canary_failures_total",
    help: "Canary containers that failed, by runtime handler and the step that failed (image, start, timeout, output, exit)",
    labelNames: ["handler", "step"] as const,
    registers,
  });
  const canaryPassed = new Gauge({
    name: "kata_sysextd_canary_passed",
    help: "1 when the last canary of this runtime handler passed with the active image, else 0",
    labelNames: ["handler"] as const,
    registers,
  });

  // Pre-create the zero-valued series so dashboards see 0 instead of "no data" before the first event.
  for (const result of ["ok", "failed", "deferred"] as const) reconciles.inc({ result }, 0);
  for (const reason of ["digest-mismatch", "signature-invalid"] as const) verificationFailures.inc({ reason }, 0);
  rollbacks.inc(0);
  downloaded.inc(0);

  return {
    contentType: registry.contentType,
    reconciled(result, seconds) {
      reconciles.inc({ result });
      if (Number.isFinite(seconds) && seconds >= 0) reconcileSeconds.observe({ result }, seconds);
    },
    downloadBytes(n) {
      if (Number.isFinite(n) && n > 0) downloaded.inc(n);
    },
    downloadFailed(reason) {
      downloadFailures.inc({ reason });
    },
    verificationFailed(reason = "digest-mismatch") {
      verificationFailures.inc({ reason });
    },
    rolledBack() {
      rollbacks.inc();
    },
    canaryRan(result) {
      canarySeconds.observe({ handler: result.handler, outcome: result.outcome }, result.durationMs / 1000);
      if (result.outcome === "failed") canaryFailures.inc({ handler: result.handler, step: result.step ?? "" });
      else canaryFailures.inc({ handler: result.handler, step: "start" }, 0);
    },
    setStatus(doc) {
      const kata = doc.members[0];
      kataInfo.reset();
      if (kata.active !== null) kataInfo.set({ name: kata.name, version: kata.active, trust: kata.trust ?? "" }, 1);
      merged.set(kata.merged ? 1 : 0);

      hostInfo.reset();
      hostInfo.set(
        {
          id: doc.host.id ?? "",
          version_id: doc.host.versionId ?? "",
          sysext_level: doc.host.sysextLevel ?? "",
          arch: doc.host.arch,
        },
        1,
      );

      for (const s of DAEMON_STATES) state.set({ state: s }, s === doc.state ? 1 : 0);

      preflightCheck.reset();
      for (const check of doc.preflight?.checks ?? []) {
        const hypervisor = check.hypervisor ?? "";
        for (const status of CHECK_STATUSES) {
          preflightCheck.set({ check: check.id, hypervisor, status }, status === check.status ? 1 : 0);
        }
      }

      memberInfo.reset();
      memberMerged.reset();
      for (const m of doc.members) {
        memberInfo.set(
          { member: m.name, active: m.active ?? "", previous: m.previous ?? "", next_boot: m.nextBoot ?? "" },
          1,
        );
        memberMerged.set({ member: m.name }, m.merged ? 1 : 0);
      }

      canaryPassed.reset();
      const activeFile = kata.image?.split("/").pop() ?? null;
      for (const r of doc.canary.results) {
        canaryPassed.set({ handler: r.handler }, r.outcome === "passed" && r.image === activeFile ? 1 : 0);
      }

      nextBootPending.set(doc.nextBoot === null ? 0 : 1);
      nextBootStaged.set(doc.nextBoot?.staged === true ? 1 : 0);
      nextBootInfo.reset();
      if (doc.nextBoot !== null) {
        nextBootInfo.set({ flatcar_version: doc.nextBoot.flatcarVersion, kata: kata.nextBoot ?? "" }, 1);
      }

      configRejected.set(doc.configRejected === null ? 0 : 1);
      rebootRequested.set(doc.reboot.requested ? 1 : 0);
      const since = doc.reboot.since === null ? Number.NaN : Date.parse(doc.reboot.since) / 1000;
      rebootRequestedSince.set(doc.reboot.requested && Number.isFinite(since) ? Math.floor(since) : 0);
    },
    render: () => registry.metrics(),
  };
}

/**
 * The usual process_* series, read when scraped. prom-client's collectDefaultMetrics would add them too, but
 * its GC observer runs on every garbage collection and cost about 7% of /status throughput under load.
 */
function registerProcessMetrics(registers: Registry[]): void {
  // Rounded down: a start time a fraction of a second in the future would be nonsense.
  const startSeconds = Math.floor(Date.now() / 1000 - process.uptime());
  new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes",
    registers,
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  new Gauge({
    name: "nodejs_heap_size_used_bytes",
    help: "V8 heap in use, in bytes",
    registers,
    collect() {
      this.set(process.memoryUsage().heapUsed);
    },
  });
  new Counter({
    name: "process_cpu_seconds_total",
    help: "User and system CPU time spent, in seconds",
    registers,
    collect() {
      const { user, system } = process.cpuUsage();
      this.reset();
      this.inc((user + system) / 1e6);
    },
  });
  new Gauge({ name: "process_start_time_seconds", help: "Start time of the process, in Unix seconds", registers }).set(
    startSeconds,
  );
}
