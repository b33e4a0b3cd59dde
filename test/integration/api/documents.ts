// Status documents as the reconciler would publish them: plain data, no dependencies, so the benchmark's
// server process can load them without pulling in the test tooling.
import {
  type CanaryStatus,
  NO_REBOOT,
  type PreflightSummary,
  type StatusDocument,
  type StatusSnapshot,
} from "../../../src/status.ts";

export const PREFLIGHT: PreflightSummary = {
  ok: true,
  failed: 0,
  warnings: 1,
  checks: [
    {
      id: "kvm-usable",
      status: "pass",
      detail: "/dev/kvm answers KVM_GET_API_VERSION 12",
      remedy: null,
      hypervisor: null,
    },
    {
      id: "vhost-vsock",
      status: "warn",
      detail: "/dev/vhost-vsock is missing",
      remedy: "modprobe vhost_vsock",
      hypervisor: "qemu",
    },
  ],
  hypervisors: [{ name: "qemu", ok: true, verdict: "qemu: ready (1 warning)" }],
};

/** The "kata" handler's canary, passed with the active image of statusDoc(). */
export const CANARY_PASSED: CanaryStatus = {
  handler: "kata",
  runtime: "io.containerd.kata.v2",
  image: "kata-containers-3.32.0-x86-64.raw",
  at: "2026-11-26T18:01:00.000Z",
  durationMs: 1200,
  outcome: "passed",
  step: null,
  reason: null,
};

export function statusDoc(overrides: Partial<StatusDocument> = {}): StatusDocument {
  return {
    daemon: { version: "0.1.0", startedAt: "2026-11-26T18:00:00.000Z", root: "/" },
    host: { id: "flatcar", versionId: "4593.2.5", sysextLevel: "1.0", arch: "x86-64" },
    extension: {
      name: "kata-containers",
      active: "3.32.0",
      previous: "3.31.0",
      merged: true,
      image: "/var/lib/kata-sysextd/images/kata-containers-3.32.0-x86-64.raw",
      trust: "checksum",
      limitation: null,
    },
    nextBoot: { flatcarVersion: "4650.0.0", kata: "3.32.0", staged: true, reason: null, skipped: [] },
    reboot: NO_REBOOT,
    members: [
      {
        name: "kata-containers",
        active: "3.32.0",
        previous: "3.31.0",
        nextBoot: "3.32.0",
        merged: true,
        held: ["3.33.0"],
      },
    ],
    preflight: PREFLIGHT,
    lastReconcile: { at: "2026-11-26T18:01:00.000Z", result: "ok", error: null, remedy: null },
    download: null,
    stateDamage: null,
    configRejected: null,
    waiting: null,
    skipped: [],
    canary: { handler: "kata", results: [CANARY_PASSED] },
    containerd: {
      base: "/usr/share/containerd/config.toml",
      why: "containerd.service's ExecStart=/usr/bin/containerd --config $CONTAINERD_CONFIG reads $CONTAINERD_CONFIG",
      handlers: [
        {
          name: "kata",
          configPath: "/opt/kata/share/defaults/kata-containers/configuration-clh.toml",
          registered: true,
          reason: null,
          pinned: false,
        },
        {
          name: "kata-qemu-tdx",
          configPath: "/opt/kata/share/defaults/kata-containers/configuration-qemu-tdx.toml",
          registered: false,
          reason: "kvm_intel parameter tdx is absent, not Y",
          pinned: false,
        },
      ],
    },
    state: "idle",
    ...overrides,
  };
}

/**
 * The daemon's snapshot that statusDoc() is the /status document of (statusDocument in api/routes.ts): Kata's
 * `extension` block and `nextBoot.kata` are its members[0].
 */
export function statusSnapshot(overrides: Partial<StatusSnapshot> = {}): StatusSnapshot {
  const { extension, members, nextBoot, ...rest } = statusDoc();
  const [kata, ...companions] = members;
  if (kata === undefined) throw new Error("statusDoc() has no members");
  const kataNextBoot = nextBoot === null ? null : (({ kata: _kata, ...block }) => block)(nextBoot);
  return {
    ...rest,
    members: [
      { ...kata, image: extension.image, trust: extension.trust },
      ...companions.map((m) => ({ ...m, image: null, trust: null })),
    ],
    nextBoot: kataNextBoot,
    limitation: extension.limitation,
    ...overrides,
  };
}
