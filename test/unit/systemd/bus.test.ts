import { describe, expect, it } from "vitest";
import { backoffDelay } from "../../../src/clock.ts";

// The bus counts reconnection attempts from 1: attempt n is retry n - 1.
describe("backoffDelay, as the bus reconnects", () => {
  const options = { initialMs: 100, maxMs: 30_000 };
  it.each([
    [1, 1, 100],
    [2, 1, 200],
    [3, 1, 400],
    [9, 1, 25_600],
    [10, 1, 30_000],
    [50, 1, 30_000],
    [1, 0, 50],
    [10, 0, 15_000],
  ])("attempt %i with random %f waits %i ms", (attempt, random, expected) => {
    expect(backoffDelay(attempt - 1, () => random, options)).toBe(expected);
  });

  it("stays within [50 %, 100 %] of the capped step for any random value", () => {
    for (let attempt = 1; attempt <= 20; attempt++) {
      for (const r of [0, 0.25, 0.5, 0.999]) {
        const step = Math.min(30_000, 100 * 2 ** (attempt - 1));
        const delay = backoffDelay(attempt - 1, () => r, options);
        expect(delay).toBeGreaterThanOrEqual(step / 2);
        expect(delay).toBeLessThanOrEqual(step);
      }
    }
  });
});
