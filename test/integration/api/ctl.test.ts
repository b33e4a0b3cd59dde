// kata-sysextctl's daemon verbs against the real API on a temporary socket and a free loopback port.
import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { createMetrics } from "../../../src/api/metrics.ts";
import { type ApiOptions, startApi } from "../../../src/api/server.ts";
import { type CtlOptions, type CtlVerb, ctlCommand } from "../../../src/cli/ctl-client.ts";
import type { CommandIo } from "../../../src/cli/io.ts";
import { skipWithout, unless } from "../../helpers/needs.ts";
import { memoryLogger, StatusHolder, scriptedActions, statusDoc, tempRunDir, VERSIONS } from "./fixtures.ts";

const CTL_BIN = fileURLToPath(new URL("../../../bin/kata-sysextctl.js", import.meta.url));
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function captureIo(isTTY = false): CommandIo & { out: () => string; err: () => string } {
  const sink = (): Writable & { text: string } => {
    const w = new Writable({
      write(chunk: Buffer, _enc, done) {
        w.text += chunk.toString();
        done();
      },
    }) as Writable & { text: string };
    w.text = "";
    return w;
  };
  const stdout = sink();
  const stderr = sink();
  return { stdout, stderr, isTTY, out: () => stdout.text, err: () => stderr.text };
}

async function daemon(overrides: Partial<ApiOptions> = {}): Promise<{ opts: CtlOptions; holder: StatusHolder }> {
  const run = await tempRunDir();
  cleanups.push(run.cleanup);
  const holder = new StatusHolder();
  const api = await startApi({
    listen: "127.0.0.1:0",
    socketPath: run.socketPath,
    snapshot: holder.snapshot,
    metrics: createMetrics({ processMetrics: false }),
    actions: scriptedActions(),
    log: memoryLogger(),
    progressIntervalMs: 10,
    ...overrides,
  });
  cleanups.push(api.close);
  return { opts: { socketPath: run.socketPath, tcpUrl: `http://${api.tcpAddresses[0]}` }, holder };
}

async function ctl(verb: CtlVerb, argv: string[], opts: CtlOptions, isTTY = false) {
  const io = captureIo(isTTY);
  const code = await ctlCommand(verb, argv, io, opts);
  return { code, out: io.out(), err: io.err() };
}

/** A refresh that moves a download through the snapshot the way the reconciler does. */
function downloadingRefresh(holder: StatusHolder, ok = true): ApiOptions["actions"]["refresh"] {
  return async () => {
    // The pass waits its turn first, as a real one waits for the store lock: the old state is still shown.
    await new Promise((resolve) => setTimeout(resolve, 60));
    holder.set({ state: "fetching" });
    for (const bytes of [0, 8, 16, 24, 32].map((m) => m * 1024 * 1024)) {
      holder.set({
        download: {
          file: "kata-containers-3.33.0-x86-64.raw",
          bytes,
          total: 32 * 1024 * 1024,
          bytesPerSecond: 4 * 1024 * 1024,
        },
      });
      await new Promise((resolve) => setTimeout(resolve, 40));
    }
    holder.set({ state: "idle", download: null });
    return ok
      ? {
          ok: true,
          result: "ok",
          message: "kata-containers 3.33.0 active and merged",
          code: null,
          remedy: null,
          active: "3.33.0",
        }
      : {
          ok: false,
          result: "failed",
          message: "kata-containers-3.33.0-x86-64.raw: sha256 mismatch",
          code: "digest-mismatch",
          remedy: "the mirror serves a corrupt image; it was quarantined",
          active: "3.32.0",
        };
  };
}

describe("kata-sysextctl status", () => {
  it("prints a short human summary", async () => {
    const { opts } = await daemon();
    const r = await ctl("status", [], opts);
    expect(r.code).toBe(0);
    expect(r.out).toContain("kata-containers 3.32.0: active, merged (verified by checksum)");
    expect(r.out).toContain("next boot  flatcar 4650.0.0: kata 3.32.0 staged");
    expect(r.out).toContain("preflight  ok, 1 warning");
    expect(r.out).toContain("host       flatcar 4593.2.5, x86-64, sysext level 1.0");
    expect(r.out).toContain(
      "held       kata-containers 3.33.0: rolled back from, skipped until refresh --release-holds",
    );
  });

  it("shows the last error with its remedy and failed preflight checks", async () => {
    const { opts, holder } = await daemon();
    holder.set({
      state: "degraded",
      lastReconcile: {
        at: "2026-11-26T18:05:00.000Z",
        result: "failed",
        error: "example.org: connection refused",
        remedy: "check [source] url",
      },
      preflight: {
        ok: false,
        failed: 1,
        warnings: 0,
        checks: [{ id: "kvm-usable", status: "fail", detail: "/dev/kvm missing", remedy: "load kvm_intel" }],
        hypervisors: [{ name: "qemu", ok: false, verdict: "qemu: cannot run Kata: kvm-usable failed" }],
      },
      nextBoot: {
        flatcarVersion: "4650.0.0",
        staged: false,
        reason: "no kata release supports 4650",
        skipped: [],
      },
    });
    const r = await ctl("status", [], opts);
    expect(r.code).toBe(0);
    expect(r.out).toContain("last error example.org: connection refused");
    expect(r.out).toContain("remedy     check [source] url");
    expect(r.out).toContain("preflight  FAILED: 1 check(s)");
    expect(r.out).toContain("kvm-usable: /dev/kvm missing (remedy: load kvm_intel)");
    expect(r.out).toContain("next boot  flatcar 4650.0.0: nothing staged (no kata release supports 4650)");
  });

  it("names the releases the last pass skipped, and why", async () => {
    const { opts, holder } = await daemon();
    holder.set({ skipped: VERSIONS.skipped });
    const r = await ctl("status", [], opts);
    expect(r.code).toBe(0);
    expect(r.out).toContain(
      "skipped    kata-containers 3.34.0: SHA-256 does not match SHA256SUMS (tried again after 2026-11-26T19:00:00.000Z)",
    );
  });

  it("--json prints the raw document", async () => {
    const { opts } = await daemon();
    const r = await ctl("status", ["--json"], opts);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual(statusDoc());
  });

  it("falls back to loopback TCP when the socket is not accessible", async () => {
    const { opts } = await daemon();
    const r = await ctl("status", ["--json"], { ...opts, socketPath: "/nonexistent/api.sock" });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).extension.active).toBe("3.32.0");
  });

  it("falls back to [::1] when that is the configured TCP address", async () => {
    const { opts } = await daemon();
    const port = new URL(opts.tcpUrl ?? "").port;
    const r = await ctl("status", [], { socketPath: "/nonexistent/api.sock", tcpUrl: `http://[::1]:${port}` });
    expect(r.code).toBe(0);
    expect(r.out).toContain("kata-containers 3.32.0: active, merged");
  });

  it("exits 1 with a clear message when the daemon is unreachable", async () => {
    const { opts } = await daemon();
    const r = await ctl("status", [], { socketPath: "/nonexistent/api.sock", tcpUrl: "http://127.0.0.1:1" });
    expect(r.code).toBe(1);
    expect(r.err).toContain("is kata-sysextd running? systemctl status kata-sysextd");
    expect(r.out).toBe("");
    // a usage error is 2, not "unreachable"
    expect((await ctl("status", ["--bogus"], opts)).code).toBe(2);
  });
});

describe("kata-sysextctl refresh", () => {
  it("prints plain progress lines when stdout is not a terminal, then the outcome", async () => {
    const holder = new StatusHolder();
    // How the previous pass ended is not this refresh's progress: no bare "degraded" (or "idle") line.
    holder.set({ state: "degraded" });
    const { opts } = await daemon({
      snapshot: holder.snapshot,
      actions: scriptedActions({ refresh: downloadingRefresh(holder) }),
    });
    const r = await ctl("refresh", [], opts);
    expect(r.code).toBe(0);
    const lines = r.out.trim().split("\n");
    expect(lines[0]).toBe("fetching kata-containers-3.33.0-x86-64.raw");
    expect(lines.filter((line) => /^(degraded|idle|error)\b/.test(line))).toEqual([]);
    expect(lines).toContain("fetching kata-containers-3.33.0-x86-64.raw");
    expect(lines).toContain("  kata-containers-3.33.0-x86-64.raw: 16.0 MiB of 32.0 MiB (50%), 4.0 MiB/s, ETA 4s");
    expect(lines.at(-1)).toBe("ok: kata-containers 3.33.0 active and merged");
    expect(r.out).not.toContain("\r");
  });

  it("draws a progress bar with bytes, rate and ETA on a terminal", async () => {
    const holder = new StatusHolder();
    const { opts } = await daemon({
      snapshot: holder.snapshot,
      actions: scriptedActions({ refresh: downloadingRefresh(holder) }),
    });
    const r = await ctl("refresh", [], opts, true);
    expect(r.code).toBe(0);
    expect(r.out).toContain(
      "\r\x1b[2Kfetching [############------------] 16.0 MiB of 32.0 MiB (50%), 4.0 MiB/s, ETA 4s",
    );
    expect(r.out.endsWith("\r\x1b[2Kok: kata-containers 3.33.0 active and merged\n")).toBe(true);
  });

  it("exits 1 and prints the remedy when the refresh failed", async () => {
    const holder = new StatusHolder();
    const { opts } = await daemon({
      snapshot: holder.snapshot,
      actions: scriptedActions({ refresh: downloadingRefresh(holder, false) }),
    });
    const r = await ctl("refresh", [], opts);
    expect(r.code).toBe(1);
    expect(r.err).toBe(
      "failed: kata-containers-3.33.0-x86-64.raw: sha256 mismatch\n  remedy: the mirror serves a corrupt image; it was quarantined\n",
    );
  });

  it("--release-holds asks the daemon to lift rollback holds first; other verbs refuse it as a usage error", async () => {
    const actions = scriptedActions();
    const { opts } = await daemon({ actions });
    expect((await ctl("refresh", ["--release-holds", "--json"], opts)).code).toBe(0);
    expect(actions.calls).toEqual(["refresh releaseHolds"]);
    const misplaced = await ctl("rollback", ["--release-holds"], opts);
    expect(misplaced.code).toBe(2);
    expect(misplaced.err).toContain("--release-holds belongs to refresh");
    expect(actions.calls).toEqual(["refresh releaseHolds"]);
  });

  it("exits 1 with a clear message when the daemon is not running", async () => {
    const r = await ctl("refresh", [], { socketPath: "/nonexistent/api.sock" });
    expect(r.code).toBe(1);
    expect(r.err).toBe(
      "kata-sysextctl: cannot reach kata-sysextd at /nonexistent/api.sock (no socket); is kata-sysextd running? systemctl status kata-sysextd\n",
    );
  });
});

describe("kata-sysextctl rollback and versions", () => {
  it("rollback prints the outcome", async () => {
    const { opts } = await daemon();
    const r = await ctl("rollback", [], opts);
    expect(r.code).toBe(0);
    expect(r.out).toBe("ok: rolled back to kata-containers 3.31.0\n");
  });

  it("versions lists local and remote versions", async () => {
    const { opts } = await daemon();
    const r = await ctl("versions", [], opts);
    expect(r.code).toBe(0);
    expect(r.out).toContain("* 3.32.0       /var/lib/kata-sysextd/images/kata-containers-3.32.0-x86-64.raw");
    expect(r.out).toContain("remote (https://example.org/extensions/):");
    expect(r.out).toContain('3.20.0       not compatible: outside policy.versions ">=3.21.0"');
    expect(r.out).toContain(
      "skipped kata-containers 3.34.0: SHA-256 does not match SHA256SUMS (tried again after 2026-11-26T19:00:00.000Z)",
    );
    expect(r.out).toContain("  3.33.0       /var/lib/kata-sysextd/images/kata-containers-3.33.0-x86-64.raw  (held)");
    expect(r.out).toContain(
      "3.33.0       not compatible: held: rolled back from; `kata-sysextctl refresh --release-holds`",
    );
    const json = await ctl("versions", ["--json"], opts);
    expect(JSON.parse(json.out)).toEqual(VERSIONS);
  });

  it("versions exits 1 when the remote list is unavailable, still showing local versions", async () => {
    const { opts } = await daemon({
      actions: scriptedActions({
        versions: async () => ({
          ...VERSIONS,
          remote: [],
          remoteError: { code: "fetch-failed", message: "example.org: timeout", remedy: "check the network" },
        }),
      }),
    });
    const r = await ctl("versions", [], opts);
    expect(r.code).toBe(1);
    expect(r.out).toContain("3.31.0");
    expect(r.err).toContain("remote versions unavailable: example.org: timeout");
  });
});

describe("as an unprivileged user", () => {
  const noSetpriv = skipWithout(
    unless(spawnSync("setpriv", ["--version"]).status === 0, "setpriv is not installed (Debian package util-linux)"),
    "the unprivileged ctl test",
  );

  it.skipIf(noSetpriv)("status works over TCP, refresh is refused by the socket's permissions", async () => {
    const { opts } = await daemon();
    // Let nobody reach the checkout's code, but not the 0700 socket folder.
    const ctlModule = fileURLToPath(new URL("../../../src/cli/ctl-client.ts", import.meta.url));
    const script = `
      const { ctlCommand } = await import(${JSON.stringify(ctlModule)});
      const io = { stdout: process.stdout, stderr: process.stderr, isTTY: false };
      const verb = process.argv[1];
      process.exitCode = await ctlCommand(verb, [], io, ${JSON.stringify(opts)});`;
    // Asynchronous on purpose: the server under test runs in this process and must keep answering.
    const asNobody = (verb: string): Promise<{ status: number | null; stdout: string; stderr: string }> =>
      new Promise((resolve) => {
        const args = ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath];
        const child = spawn("setpriv", [...args, "--input-type=module", "-e", script, verb]);
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => {
          stdout += d.toString();
        });
        child.stderr.on("data", (d: Buffer) => {
          stderr += d.toString();
        });
        child.on("close", (status) => resolve({ status, stdout, stderr }));
      });
    await chmod(opts.socketPath, 0o600);
    const status = await asNobody("status");
    expect(status.stderr).toBe("");
    expect(status.status).toBe(0);
    expect(status.stdout).toContain("kata-containers 3.32.0: active, merged");
    const refresh = await asNobody("refresh");
    expect(refresh.status).toBe(1);
    expect(refresh.stderr).toContain(`permission denied on ${opts.socketPath}: this command needs root`);
  });
});

describe("answers kata-sysextctl does not expect", () => {
  /** A raw HTTP server on a unix socket that answers every request with `reply` (written as is). */
  async function oddDaemon(reply: (socket: Socket) => void): Promise<CtlOptions> {
    const run = await tempRunDir();
    cleanups.push(run.cleanup);
    await mkdir(dirname(run.socketPath), { recursive: true });
    const server = createServer((socket) => {
      socket.on("error", () => undefined);
      socket.once("data", () => reply(socket));
    });
    await new Promise<void>((resolve) => server.listen(run.socketPath, () => resolve()));
    cleanups.push(() => new Promise((resolve) => server.close(() => resolve())));
    return { socketPath: run.socketPath, tcpUrl: "http://127.0.0.1:1" };
  }

  it("status: a document it cannot show is one clear line and exit 1, not a stack trace", async () => {
    const body = JSON.stringify({ daemon: {}, host: {}, extension: { name: "k", merged: true }, state: "idle" });
    const opts = await oddDaemon((socket) =>
      socket.end(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`),
    );
    const r = await ctl("status", [], opts);
    expect(r.code).toBe(1);
    expect(r.err.trim().split("\n")).toHaveLength(1);
    expect(r.err).not.toContain("TypeError");
  });

  /** A daemon that answers every request with `body` as JSON (HTTP 200). */
  const answering = (body: unknown): Promise<CtlOptions> => {
    const text = JSON.stringify(body);
    return oddDaemon((socket) =>
      socket.end(
        `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
      ),
    );
  };

  it("status: a document missing a required field is refused, naming the field", async () => {
    const { merged: _merged, ...extension } = statusDoc().extension;
    const r = await ctl("status", [], await answering({ ...statusDoc(), extension }));
    expect(r.code).toBe(1);
    expect(r.out).toBe("");
    expect(r.err).toBe(
      "kata-sysextctl: unexpected answer from kata-sysextd: field extension.merged: missing; is kata-sysextd the same version as kata-sysextctl? install both from one release\n",
    );
  });

  it("rollback and versions: an answer of the wrong shape is refused, naming the field", async () => {
    const rollback = await ctl("rollback", [], await answering({ ok: "yes", result: "ok", message: "m" }));
    expect(rollback.code).toBe(1);
    expect(rollback.err).toContain("field ok: must be boolean, got string");
    const { local: _local, ...versions } = VERSIONS;
    const list = await ctl("versions", [], await answering(versions));
    expect(list.code).toBe(1);
    expect(list.err).toContain("field local: missing");
  });

  it("status: a daemon older than the optional fields, or newer with fields it does not know, is still shown", async () => {
    const { reboot: _r, containerd: _c, canary: _k, skipped: _s, stateDamage: _d, ...older } = statusDoc();
    const members = older.members.map(({ held: _held, ...m }) => m);
    const nextBoot = { flatcarVersion: "4600.0.0", kata: null, staged: false, reason: null };
    const r = await ctl("status", [], await answering({ ...older, members, nextBoot, uptime: 12 }));
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("kata-containers 3.32.0: active, merged");
    expect(r.out).toContain("next boot  flatcar 4600.0.0: nothing staged");
  });

  it("refresh: a result line of the wrong shape ends with the field named, not 'ended without an outcome'", async () => {
    const opts = await oddDaemon((socket) => {
      const line = `${JSON.stringify({ type: "result", result: { ok: true, result: "ok" } })}\n`;
      socket.end(
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n" +
          `${Buffer.byteLength(line).toString(16)}\r\n${line}\r\n0\r\n\r\n`,
      );
    });
    const r = await ctl("refresh", [], opts);
    expect(r.code).toBe(1);
    expect(r.err).toContain("refresh failed: unexpected answer from kata-sysextd: field result.message: missing");
  });

  it("refresh: a connection lost mid-stream says the refresh may still run, and ends the progress line", async () => {
    const opts = await oddDaemon((socket) => {
      socket.write("HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n");
      const line = `${JSON.stringify({ type: "progress", state: "fetching", download: null })}\n`;
      socket.write(`${Buffer.byteLength(line).toString(16)}\r\n${line}\r\n`);
      setTimeout(() => socket.destroy(), 50); // cut, no last chunk
    });
    const r = await ctl("refresh", [], opts, true);
    expect(r.code).toBe(1);
    expect(r.err).toContain("the connection to kata-sysextd was lost during the refresh");
    expect(r.err).toContain("it may still be running: kata-sysextctl status");
    expect(r.err).not.toContain("is kata-sysextd running?");
    expect(r.out).toContain("fetching");
    expect(r.out.endsWith("\r\x1b[2K")).toBe(true); // the bar was cleared before the message
  });
});

describe("kata-sysextctl --root and --config", () => {
  const run = (args: string[]) => spawnSync(process.execPath, [CTL_BIN, ...args], { encoding: "utf8" });

  it("a flag without its value is a usage error, not the next flag taken as one", () => {
    for (const args of [
      ["status", "--root"],
      ["status", "--root", "--json"],
      ["status", "--config="],
    ]) {
      const r = run(args);
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.stderr).toMatch(/--(root|config) needs a value/);
    }
  });

  it("a configuration the daemon would reject does not stop status: a warning, then the daemon is asked", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kata-ctl-config-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const config = join(dir, "a=b.toml"); // an "=" in the path: --config=PATH keeps all of it
    writeFileSync(config, "[daemon]\ninterval_second = 300\n");
    const r = run(["status", `--config=${config}`, "--root", dir]);
    expect(r.stderr).toContain(`${config}`);
    expect(r.stderr).toContain('unknown key "daemon.interval_second"');
    expect(r.stderr).toContain("the TCP fallback uses 127.0.0.1:8720");
    expect(r.status).toBe(1); // nobody answers on this root's socket: unreachable, not a usage error
    // The hint fits a daemon started with --root: no systemctl.
    expect(r.stderr).toContain(`is a kata-sysextd with --root ${dir} running?`);
  });
});
