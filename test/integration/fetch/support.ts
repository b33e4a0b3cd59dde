// Shared pieces of the fetch tests: a fake clock that records sleeps instead of waiting, a logger that keeps
// its records, throw-away directories, a throw-away CA for TLS servers and a server that trickles.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Clock } from "../../../src/clock.ts";
import { createLogger, type Fields, type Level, type Logger } from "../../../src/log/logger.ts";

export interface FakeClock extends Clock {
  sleeps: number[];
}

export function fakeClock(startMs = Date.UTC(2026, 0, 1)): FakeClock {
  let now = startMs;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => new Date(now),
    monotonicMs: () => now - startMs,
    sleep: async (ms) => {
      sleeps.push(ms);
      now += ms;
    },
  };
}

export interface LogRecord {
  level: Level;
  message: string;
  fields: Fields;
}

export function memoryLogger(): Logger & { records: LogRecord[] } {
  const records: LogRecord[] = [];
  const logger = createLogger((level, message, fields) => records.push({ level, message, fields }), "debug");
  return Object.assign(logger, { records });
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `kata-fetch-${prefix}-`));
}

export function listDir(dir: string): string[] {
  return readdirSync(dir).sort();
}

export interface TestCertificate {
  /** The CA to trust (the `ca` option). */
  ca: Buffer;
  /** Key and certificate for "localhost", signed by the CA: a TLS server's `key` and `cert`. */
  key: Buffer;
  cert: Buffer;
}

/** Makes a throw-away CA and a server certificate for "localhost" with openssl, in `dir`. */
export function makeCertificate(dir: string): TestCertificate {
  const ssl = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  writeFileSync(join(dir, "san.cnf"), "subjectAltName=DNS:localhost\n");
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  ssl([
    "req",
    "-x509",
    ...key,
    "-days",
    "2",
    "-subj",
    "/CN=kata-sysextd test CA",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
  ]);
  ssl(["req", ...key, "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"]);
  const sign = ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"];
  ssl([...sign, "-days", "2", "-extfile", "san.cnf", "-out", "server.pem"]);
  return {
    ca: readFileSync(join(dir, "ca.pem")),
    key: readFileSync(join(dir, "server.key")),
    cert: readFileSync(join(dir, "server.pem")),
  };
}

/**
 * A server on 127.0.0.1 that answers every request with `head`, then writes `piece` every `everyMs` for as long
 * as the client stays: never idle, never done. `close` ends its connections too.
 */
export async function trickleServer(
  head: string,
  piece: string | Buffer,
  everyMs: number,
): Promise<{ url: string; close(): Promise<void> }> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on("error", () => undefined);
    socket.once("data", () => {
      socket.write(head);
      const timer = setInterval(() => socket.write(piece), everyMs);
      socket.on("close", () => clearInterval(timer));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(() => resolve(undefined)));
    },
  };
}
