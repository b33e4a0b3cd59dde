// The stderr sink with real processes: every line whole and in order, whether fd 2 takes it at once or is a
// non-blocking pipe that fills up (Node makes it one once anything used process.stderr) and the lines queue.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const LOGGER = join(import.meta.dirname, "../../../src/log/logger.ts");

/** A child logging `count` numbered lines through stderrSink(), after `before` ran; its stderr as read. */
async function logLines(count: number, before: string): Promise<string> {
  const script = `import { createLogger, stderrSink } from ${JSON.stringify(LOGGER)};
${before}
const log = createLogger(stderrSink());
for (let i = 0; i < ${count}; i++) log.info("line " + i + " " + "x".repeat(200), { N: i });`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "ignore", "pipe"] });
  let text = "";
  child.stderr.on("data", (d: Buffer) => {
    text += d.toString();
  });
  const [code] = await once(child, "exit");
  expect(code).toBe(0);
  return text;
}

const expected = (count: number) =>
  Array.from({ length: count }, (_, i) => `info: line ${i} ${"x".repeat(200)} [N=${i}]\n`).join("");

describe("stderrSink", () => {
  it("writes each record as a line to fd 2", async () => {
    expect(await logLines(50, "")).toBe(expected(50));
  });

  it("keeps every line, in order, when fd 2 is a non-blocking pipe that fills up", async () => {
    // Far more than a pipe holds (64 KiB), written without yielding to the event loop that drains the stream.
    const count = 3000;
    expect(await logLines(count, 'process.stderr.write("");')).toBe(expected(count));
  });
});
