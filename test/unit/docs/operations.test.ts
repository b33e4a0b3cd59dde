// docs/operations.md and config/prometheus/ stay true to the code: every MESSAGE_ID, ERROR_CODE and preflight
// check id the code can emit has its row, and every metric and label the alert rules use is one the daemon serves.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { createMetrics } from "../../../src/api/metrics.ts";
import { MessageId } from "../../../src/log/logger.ts";
import type { StatusSnapshot } from "../../../src/status.ts";
import { PROJECT } from "../../helpers/sandbox.ts";
import { statusSnapshot } from "../../integration/api/documents.ts";

const read = (path: string): string => readFileSync(join(PROJECT, path), "utf8");
const operations = read("docs/operations.md");

/** The first cells (in backticks) of the rows of the table under a heading of docs/operations.md. */
function firstColumn(heading: string): Set<string> {
  const section = operations.split(/^## /m).find((s) => s.startsWith(heading));
  if (section === undefined) throw new Error(`docs/operations.md has no section "${heading}"`);
  const cells = section
    .split("\n")
    .filter((line) => line.startsWith("| `"))
    .map((line) => line.split("|")[1] ?? "");
  return new Set(cells.flatMap((cell) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? "")));
}

describe("docs/operations.md", () => {
  it("explains every MESSAGE_ID the daemon logs, and the catalog explains them too", () => {
    const documented = firstColumn("The journal");
    const catalog = read("units/kata-sysextd.catalog");
    for (const id of Object.values(MessageId)) {
      expect(documented, id).toContain(id);
      expect(catalog, id).toContain(`-- ${id}`);
    }
    expect(documented.size).toBe(Object.values(MessageId).length);
  });

  it("has a row for every ERROR_CODE", () => {
    const union = /export type ErrorCode =([^;]+);/.exec(read("src/errors.ts"))?.[1] ?? "";
    const codes = [...union.matchAll(/"([a-z-]+)"/g)].map((m) => m[1] ?? "");
    expect(codes.length).toBeGreaterThan(20);
    const documented = firstColumn("Troubleshooting by ERROR_CODE");
    expect(codes.filter((c) => !documented.has(c))).toEqual([]);
    expect([...documented].filter((c) => !codes.includes(c))).toEqual([]);
  });

  it("has a row for every preflight check id", () => {
    const dir = "src/preflight/checks";
    const source = readdirSync(join(PROJECT, dir))
      .map((f) => read(join(dir, f)))
      .join("\n");
    const ids = new Set(
      [...source.matchAll(/(?:result|report)\(\s*"([a-z0-9-]+)"|const ID = "([a-z0-9-]+)"/g)].map(
        (m) => m[1] ?? m[2] ?? "",
      ),
    );
    expect(ids.size).toBeGreaterThan(15);
    const documented = firstColumn("Troubleshooting by preflight check");
    expect([...ids].filter((id) => !documented.has(id))).toEqual([]);
  });
});

describe("config/prometheus/alerts.yml", () => {
  const rules = parse(read("config/prometheus/alerts.yml")) as {
    groups: {
      name: string;
      rules: { alert: string; expr: string; for?: string; labels: object; annotations: object }[];
    }[];
  };
  const all = rules.groups.flatMap((g) => g.rules);

  /** Every series name the daemon serves, with its label names, after a status with every part filled in. */
  const served = (() => {
    const metrics = createMetrics({ processMetrics: false });
    metrics.setStatus(FULL_STATUS);
    metrics.reconciled("failed", 1);
    metrics.downloadFailed("fetch-timeout");
    metrics.rolledBack();
    return metrics.render().then((text) => {
      const series = new Map<string, Set<string>>();
      for (const line of text.split("\n")) {
        const m = /^([a-z_]+)(?:\{([^}]*)\})? /.exec(line);
        if (m === null) continue;
        const labels = series.get(m[1] ?? "") ?? new Set<string>();
        for (const pair of (m[2] ?? "").matchAll(/([a-z_]+)="/g)) labels.add(pair[1] ?? "");
        series.set(m[1] ?? "", labels);
      }
      return series;
    });
  })();

  it("alerts on what an operator must act on: no image, rollback, next boot, a rejected configuration, preflight", () => {
    const names = all.map((r) => r.alert);
    expect(names).toEqual(
      expect.arrayContaining([
        "KataNoImageActive",
        "KataRolledBack",
        "KataNextBootNotStaged",
        "KataConfigRejected",
        "KataPreflightFailing",
      ]),
    );
    for (const rule of all) {
      expect(rule.labels, rule.alert).toHaveProperty("severity");
      expect(rule.annotations, rule.alert).toHaveProperty("summary");
      if (rule.for !== undefined) expect(rule.for, rule.alert).toMatch(/^\d+[smh]$/);
    }
  });

  it("uses only metrics and labels the daemon serves", async () => {
    const series = await served;
    for (const rule of all) {
      for (const m of rule.expr.matchAll(/(kata_sysextd_[a-z_]+)(?:\{([^}]*)\})?/g)) {
        const name = m[1] ?? "";
        expect(series.has(name), `${rule.alert}: ${name} is not served`).toBe(true);
        for (const label of (m[2] ?? "").matchAll(/([a-z_]+)\s*(?:=~|!=|!~|=)/g)) {
          expect(series.get(name), `${rule.alert}: ${name} has no label ${label[1]}`).toContain(label[1]);
        }
      }
    }
  });
});

/** The API tests' status document, with a next boot pending and a failing preflight check. */
const FULL_STATUS: StatusSnapshot = statusSnapshot({
  nextBoot: { flatcarVersion: "4650.0.0", staged: false, reason: "no image", skipped: [] },
  preflight: {
    ok: false,
    failed: 1,
    warnings: 0,
    checks: [{ id: "kvm-usable", status: "fail", detail: "no /dev/kvm", hypervisor: "qemu" }],
    hypervisors: [],
  },
  state: "degraded",
});
