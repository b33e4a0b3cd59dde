// kata-sysextctl preflight [--json] [--root DIR] [--config FILE]: the hypervisor preflight, run locally, no
// daemon needed. Exit 0 when no check failed, 1 when some did, 2 on usage or configuration errors.
import { parseArgs } from "node:util";
import { loadConfig } from "../config/load.ts";
import { asKataError } from "../errors.ts";
import { hostPaths } from "../paths.ts";
import type { CheckGroup } from "../preflight/check.ts";
import type { ContainerdFiles } from "../preflight/context.ts";
import { GROUP_TITLES, type PreflightReport, runPreflight } from "../preflight/run.ts";
import type { CheckStatus } from "../status.ts";
import { activeCompanions } from "../store/companions.ts";
import { type CommandIo, EXIT, rootProblem } from "./io.ts";

const USAGE = `Usage: kata-sysextctl preflight [--json] [--root DIR] [--config FILE]

Checks whether this host can run Kata Containers, per configured hypervisor: KVM, devices, the Kata payload,
binary compatibility with the host's glibc, SELinux labels, cgroups and containerd.

Options:
  --json         print the report as JSON
  --root DIR     read /proc, /sys, /dev, /etc, /usr and /opt under DIR (a fixture or another system's tree)
  --config FILE  kata-sysextd configuration (default: <root>/etc/kata-sysextd/config.toml)
  -h, --help     this text
`;

export async function preflightCommand(argv: string[], io: CommandIo): Promise<number> {
  let values: { json?: boolean; root?: string; config?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        json: { type: "boolean" },
        root: { type: "string" },
        config: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    io.stderr.write(`kata-sysextctl preflight: ${(err as Error).message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  if (values.help) {
    io.stdout.write(USAGE);
    return EXIT.ok;
  }
  const badRoot = rootProblem(values.root);
  if (badRoot !== null) {
    io.stderr.write(`kata-sysextctl preflight: ${badRoot}\n`);
    return EXIT.usage;
  }
  const paths = hostPaths(values.root ?? "/");
  let containerd: ContainerdFiles | null;
  let companions: { name: string; files: string[] }[];
  try {
    const { config } = await loadConfig(values.config ?? paths.configFile, {
      required: values.config !== undefined,
      host: paths.host,
    });
    const { enabled, configFile, unitDropIn, handlers } = config.containerd;
    containerd = enabled ? { configFile, unitDropIn, handlers } : null;
    companions = await activeCompanions(paths, config);
  } catch (err) {
    const e = asKataError(err);
    io.stderr.write(`kata-sysextctl preflight: ${e.message}${e.remedy ? `\n  ${e.remedy}` : ""}\n`);
    return EXIT.usage;
  }
  const report = await runPreflight({ paths, containerd, companions });
  io.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderReport(report, io.isTTY));
  return report.ok ? EXIT.ok : EXIT.failed;
}

const LABEL: Record<CheckStatus, string> = { pass: "PASS", warn: "WARN", fail: "FAIL", skip: "SKIP" };
const COLOUR: Record<CheckStatus, string> = { pass: "32", warn: "33", fail: "31", skip: "2" };

/** Human report: checks grouped, a remedy under each warning and failure, one verdict line per hypervisor. */
export function renderReport(report: PreflightReport, colour: boolean): string {
  const paint = (code: string, text: string): string => (colour ? `\u001b[${code}m${text}\u001b[0m` : text);
  const lines: string[] = [];
  const groups = [...new Set(report.checks.map((c) => c.group))];
  const width = Math.max(...report.checks.map((c) => c.id.length + (c.hypervisor ? c.hypervisor.length + 3 : 0)));
  for (const group of groups) {
    lines.push(paint("1", GROUP_TITLES[group as CheckGroup]));
    for (const c of report.checks.filter((x) => x.group === group)) {
      const name = `${c.id}${c.hypervisor ? ` [${c.hypervisor}]` : ""}`.padEnd(width);
      lines.push(`  ${paint(COLOUR[c.status], LABEL[c.status])}  ${name}  ${c.detail}`);
      if (c.remedy) lines.push(`        ${" ".repeat(width)}  ${paint("2", `-> ${c.remedy}`)}`);
    }
    lines.push("");
  }
  lines.push(paint("1", "Verdict"));
  if (report.hypervisors.length === 0) lines.push(`  ${paint(COLOUR.fail, "no hypervisor configured")}`);
  for (const h of report.hypervisors) lines.push(`  ${paint(h.ok ? COLOUR.pass : COLOUR.fail, h.verdict)}`);
  lines.push(
    `  ${report.failed} failed, ${report.warnings} warning${report.warnings === 1 ? "" : "s"}, ${report.checks.length} checks in ${report.durationMs} ms`,
  );
  return `${lines.join("\n")}\n`;
}
