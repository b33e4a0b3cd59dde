// `npm run bench`: every benchmark once, printed as ratios against a baseline measured in the same run
// (these machines are noisy; absolute numbers from one run mean little). Targets are printed, not asserted.
// `npm run bench -- api fetch` runs a subset; `--quick` shortens the API soak for a fast look.
import { parseArgs } from "node:util";
import { benchApi } from "./api.bench.ts";
import { benchBoot } from "./boot.bench.ts";
import { benchCanary } from "./canary.bench.ts";
import { benchFetch } from "./fetch.bench.ts";
import { benchIdle } from "./idle.bench.ts";
import { benchPreflight } from "./preflight.bench.ts";
import { benchResolve } from "./resolve.bench.ts";
import { benchStart } from "./start.bench.ts";

interface Line {
  bench: string;
  measure: string;
  value: string;
  target: string;
  met: boolean;
  /** Context for reading a result, not a target: printed as "info". */
  info?: boolean;
}

const fmt = (n: number, digits = 2): string => n.toFixed(digits);

const BENCHES: Record<string, (quick: boolean) => Promise<Line[]>> = {
  canary: async (quick) => {
    const r = await benchCanary(quick ? 5 : 15);
    return [
      {
        bench: "canary",
        measure: `canary (image present) vs ctr run --rm, same image and runtime (runc), median of ${r.runs}`,
        value: `${fmt(r.ratio)}x (${fmt(r.canaryMedianMs, 0)} vs ${fmt(r.ctrMedianMs, 0)} ms)`,
        target: "<= 1.20x",
        met: r.ratio <= 1.2,
      },
    ];
  },
  resolve: async () => {
    const r = await benchResolve();
    return [
      {
        bench: "resolve",
        measure: `resolve over ${r.entries} manifest entries`,
        value: `${fmt(r.ms, 1)} ms`,
        target: "< 50 ms",
        met: r.ms < 50,
      },
    ];
  },
  preflight: async () => {
    const r = await benchPreflight();
    return [{ bench: "preflight", measure: r.name, value: `${fmt(r.ms, 1)} ms`, target: "< 250 ms", met: r.ms < 250 }];
  },
  fetch: async (quick) => {
    const r = await benchFetch(quick ? 64 * 1024 * 1024 : undefined);
    return [
      {
        bench: "fetch",
        measure: `downloadImage vs the slower of curl -o and dd conv=fdatasync, ${fmt(r.bytes / 1024 / 1024, 0)} MiB`,
        value: `${fmt(r.ratio)}x (ours ${fmt(r.oursMiBps, 0)}, curl -o ${fmt(r.curlMiBps, 0)}, dd ${fmt(r.diskMiBps, 0)} MiB/s)`,
        target: ">= 0.90x",
        met: r.ratio >= 0.9,
      },
      {
        bench: "fetch",
        measure: "peak RSS increase over idle during the download",
        value: `${fmt(r.rssPeakIncreaseMiB, 1)} MiB`,
        target: "<= 32 MiB",
        met: r.rssPeakIncreaseMiB <= 32,
      },
      {
        bench: "fetch",
        measure: "the same work with the usual tools: curl -o && sha256sum && sync",
        value: `${fmt(r.ratioToCurlVerified)}x (ours vs ${fmt(r.curlVerifiedMiBps, 0)} MiB/s)`,
        target: "none",
        met: true,
        info: true,
      },
      {
        bench: "fetch",
        measure: "downloadImage vs curl -o alone (which never waits for the disk)",
        value: `${fmt(r.ratioToCurl)}x`,
        target: "none",
        met: true,
        info: true,
      },
    ];
  },
  api: async (quick) => {
    // The soak comes on top of the load: 10 s + 50 s is the 60 s between the two RSS samples.
    const r = await benchApi(quick ? { loadSeconds: 3, soakSeconds: 5 } : { loadSeconds: 10, soakSeconds: 50 });
    return [
      {
        bench: "api",
        measure: `GET /status vs bare fastify, ${r.connections} connections, ${r.loadSeconds} s`,
        value: `${fmt(r.ratio)}x (${fmt(r.status.requestsPerSecond, 0)} vs ${fmt(r.hello.requestsPerSecond, 0)} req/s)`,
        target: ">= 0.80x",
        met: r.ratio >= 0.8,
      },
      {
        bench: "api",
        measure: "p99 latency of /status",
        value: `${fmt(r.status.p99Ms)} ms`,
        target: "< 5 ms",
        met: r.status.p99Ms < 5,
      },
      {
        bench: "api",
        measure: `RSS growth over ${r.soakSeconds} s of load`,
        value: `${fmt(r.rssGrowthMiB, 1)} MiB`,
        target: "<= 5 MiB",
        met: r.rssGrowthMiB <= 5,
      },
    ];
  },
  boot: async () => {
    const r = await benchBoot();
    return [
      {
        bench: "boot",
        measure: `kata-sysextd boot, nothing to relink, vs node -e 0 (medians of ${r.runs}, alternated)`,
        value: `${fmt(r.ratio)}x (${fmt(r.bootMs, 0)} vs ${fmt(r.nodeMs, 0)} ms)`,
        target: "<= 2.00x",
        met: r.ratio <= 2,
      },
    ];
  },
  idle: async () => {
    const r = await benchIdle();
    return [
      {
        bench: "idle",
        measure: "RSS of the idle daemon vs a bare fastify server, side by side",
        value: `${fmt(r.ratio)}x (${fmt(r.daemonMiB, 1)} vs ${fmt(r.fastifyMiB, 1)} MiB)`,
        target: "<= 1.20x",
        met: r.ratio <= 1.2,
      },
    ];
  },
  start: async () => {
    const r = await benchStart();
    return [
      {
        bench: "start",
        measure: "kata-sysextd start to first 200 on /status (median of 5 restarts)",
        value: `${fmt(r.warmMedianMs, 0)} ms (first start ${fmt(r.coldMs, 0)} ms)`,
        target: "< 400 ms",
        met: r.warmMedianMs < 400,
      },
    ];
  },
};

const { values, positionals } = parseArgs({ allowPositionals: true, options: { quick: { type: "boolean" } } });
const selected = positionals.length > 0 ? positionals : Object.keys(BENCHES);
const lines: Line[] = [];
for (const name of selected) {
  const bench = BENCHES[name];
  if (bench === undefined) {
    process.stderr.write(`unknown benchmark "${name}"; known: ${Object.keys(BENCHES).join(", ")}\n`);
    process.exit(2);
  }
  process.stderr.write(`running ${name}…\n`);
  lines.push(...(await bench(values.quick === true)));
}
const width = Math.max(...lines.map((l) => l.measure.length));
for (const l of lines) {
  process.stdout.write(
    `${l.info ? "info" : l.met ? "ok  " : "MISS"} ${l.bench.padEnd(10)} ${l.measure.padEnd(width)}  ${l.value}  (target ${l.target})\n`,
  );
}
