// Verdicts per hypervisor and the human report: pure functions over results.
import { describe, expect, it } from "vitest";
import { renderReport } from "../../../src/cli/preflight.ts";
import { type GroupedCheck, type PreflightReport, verdictFor } from "../../../src/preflight/run.ts";

const check = (
  id: string,
  status: GroupedCheck["status"],
  hypervisor: string | null = null,
  group: GroupedCheck["group"] = "devices",
): GroupedCheck => ({
  id,
  status,
  detail: `${id} detail`,
  remedy: status === "warn" || status === "fail" ? `fix ${id}` : null,
  hypervisor,
  group,
});

describe("verdictFor", () => {
  const cases: Array<{ name: string; checks: GroupedCheck[]; want: string; ok: boolean }> = [
    { name: "nothing failed", checks: [check("a", "pass"), check("b", "skip")], want: "qemu: ready", ok: true },
    {
      name: "warnings are counted",
      checks: [check("a", "warn"), check("b", "warn", "qemu")],
      want: "qemu: ready (2 warnings)",
      ok: true,
    },
    {
      name: "another hypervisor's failure does not count",
      checks: [check("vhost-vsock", "fail", "fc")],
      want: "qemu: ready",
      ok: true,
    },
    {
      name: "own failure",
      checks: [check("vhost-vsock", "fail", "qemu")],
      want: "qemu: cannot run Kata: vhost-vsock failed",
      ok: false,
    },
    {
      name: "host-wide failure, ids listed once",
      checks: [check("kvm-usable", "fail"), check("abi", "fail", "qemu"), check("abi", "fail", "qemu")],
      want: "qemu: cannot run Kata: kvm-usable, abi failed",
      ok: false,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(verdictFor("qemu", c.checks)).toEqual({ name: "qemu", ok: c.ok, verdict: c.want });
    });
  }
});

describe("renderReport", () => {
  const report: PreflightReport = {
    ok: false,
    failed: 1,
    warnings: 1,
    durationMs: 42,
    checks: [
      check("kvm-usable", "pass", null, "virtualisation"),
      check("vhost-vsock", "fail", "qemu", "devices"),
      check("opt-readonly", "warn", null, "host"),
    ],
    hypervisors: [
      { name: "clh", ok: true, verdict: "clh: ready (1 warning)" },
      { name: "qemu", ok: false, verdict: "qemu: cannot run Kata: vhost-vsock failed" },
    ],
  };

  it("groups, aligns, shows remedies and ends with the verdicts", () => {
    expect(renderReport(report, false)).toBe(
      [
        "Virtualisation",
        "  PASS  kvm-usable          kvm-usable detail",
        "",
        "Devices",
        "  FAIL  vhost-vsock [qemu]  vhost-vsock detail",
        "                            -> fix vhost-vsock",
        "",
        "Host integration",
        "  WARN  opt-readonly        opt-readonly detail",
        "                            -> fix opt-readonly",
        "",
        "Verdict",
        "  clh: ready (1 warning)",
        "  qemu: cannot run Kata: vhost-vsock failed",
        "  1 failed, 1 warning, 3 checks in 42 ms",
        "",
      ].join("\n"),
    );
  });

  it("colours with ANSI codes only when asked", () => {
    const coloured = renderReport(report, true);
    expect(coloured).toContain("\u001b[31mFAIL\u001b[0m");
    expect(coloured).toContain("\u001b[33mWARN\u001b[0m");
    expect(coloured).toContain("\u001b[31mqemu: cannot run Kata: vhost-vsock failed\u001b[0m");
    expect(renderReport(report, false)).not.toContain("\u001b");
  });
});
