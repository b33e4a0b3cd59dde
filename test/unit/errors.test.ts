import { describe, expect, it } from "vitest";
import {
  type ErrorCategory,
  type ErrorCode,
  type ErrorPhase,
  errorCategory,
  errorPhase,
  KataError,
} from "../../src/errors.ts";

describe("errorPhase", () => {
  // The daemon's metrics count these apart: verification failures, and download failures (network or disk).
  it.each<[ErrorCode, ErrorPhase | null]>([
    ["digest-mismatch", "verification"],
    ["signature-invalid", "verification"],
    ["inspect-failed", "verification"],
    ["fetch-failed", "download"],
    ["fetch-timeout", "download"],
    ["fetch-too-large", "download"],
    ["fetch-http-status", "download"],
    ["disk-full", "download"],
    ["manifest-invalid", null],
    ["activation-failed", null],
    ["no-compatible-version", null],
    ["store-failed", null],
  ])("%s: %s", (code, phase) => {
    expect(errorPhase(code)).toBe(phase);
  });
});

describe("errorCategory", () => {
  it.each<[ErrorCode, ErrorCategory]>([
    ["fetch-timeout", "retryable"],
    ["dbus-timeout", "retryable"],
    ["disk-full", "retryable"],
    ["digest-mismatch", "terminal"],
    ["inspect-failed", "terminal"],
    ["rollback-refused", "terminal"],
    ["config-invalid", "configuration"],
    ["no-compatible-version", "configuration"],
  ])("%s is %s", (code, category) => {
    expect(errorCategory(code)).toBe(category);
  });

  it("an error carries its code's category", () => {
    expect(new KataError("fetch-failed", "connection refused").category).toBe("retryable");
    expect(new KataError("usage", "unknown option").category).toBe("configuration");
  });
});
