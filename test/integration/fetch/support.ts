// Shared pieces of the fetch tests: a fake clock that records sleeps instead of waiting, a logger that keeps
// its records, and throw-away directories.
import { mkdtempSync, readdirSync } from "node:fs";
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
