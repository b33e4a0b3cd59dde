// How a finished `ctr run` is judged: the step a failure is blamed on, and containerd's words kept in the reason.
import { describe, expect, it } from "vitest";
import { judgeRun } from "../../../src/canary/canary.ts";
import type { RunOutcome } from "../../../src/canary/ctr.ts";

const RUNC = "io.containerd.runc.v2";
const exited = (exitCode: number, stdout: string, stderr = ""): RunOutcome => ({
  kind: "exited",
  exitCode,
  stdout,
  stderr,
});

describe("judgeRun", () => {
  it.each<[string, RunOutcome, ReturnType<typeof judgeRun>]>([
    [
      "the marker and exit 0 pass, with the first line kept",
      exited(0, "kata-sysextd-canary: ok kernel=6.12.1\n"),
      { passed: true, output: "kata-sysextd-canary: ok kernel=6.12.1" },
    ],
    [
      "a timeout fails at timeout",
      { kind: "timeout", detail: "ctr run: timed out after 60000 ms" },
      { passed: false, step: "timeout", reason: "no exit within 60 s (ctr run: timed out after 60000 ms)" },
    ],
    [
      "containerd refusing the runtime fails at start, in its own words",
      exited(1, "", 'ctr: failed to start shim: runtime "io.containerd.nope.v2" binary not installed: unknown\n'),
      {
        passed: false,
        step: "start",
        reason: `runtime ${RUNC} could not start the canary: ctr: failed to start shim: runtime "io.containerd.nope.v2" binary not installed: unknown`,
      },
    ],
    [
      "log noise on stderr is not containerd's error",
      exited(3, "partial\n", 'time="…" level=warning msg="cleanup"\n'),
      { passed: false, step: "exit", reason: 'the canary exited 3 after printing "partial"' },
    ],
    [
      "a non-zero exit without output fails at exit",
      exited(137, ""),
      { passed: false, step: "exit", reason: "the canary exited 137" },
    ],
    [
      "exit 0 with another first line fails at output",
      exited(0, "hello\nkata-sysextd-canary: ok\n"),
      { passed: false, step: "output", reason: 'the canary printed "hello" instead of "kata-sysextd-canary: ok …"' },
    ],
    [
      "exit 0 with nothing printed fails at output",
      exited(0, ""),
      { passed: false, step: "output", reason: 'the canary printed "" instead of "kata-sysextd-canary: ok …"' },
    ],
  ])("%s", (_what, outcome, verdict) => {
    expect(judgeRun(outcome, RUNC, 60_000)).toEqual(verdict);
  });
});
