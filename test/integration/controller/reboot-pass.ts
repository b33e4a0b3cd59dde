// One reconcile pass of the real Reconciler (wired as the daemon wires it, real systemd-sysext under --root) with
// its Clock fixed at a given time, in a process of its own so that it can run beside a stand-in Kata sandbox in a
// PID namespace of their own (test/helpers/sandbox.ts inMountNamespace). argv: <root> <ISO-8601 time>.
// Prints {result, reboot, requeueAfterMs} as JSON; the log goes to stderr.
import { type Clock, systemClock } from "../../../src/clock.ts";
import { countKataSandboxes } from "../../../src/controller/observe.ts";
import { createLogger, stderrSink } from "../../../src/log/logger.ts";
import { hostPaths } from "../../../src/paths.ts";
import { binarySysext } from "../../../src/sysext/sysext.ts";
import { reconcilerOn } from "../../helpers/reconciler.ts";

const [root, at] = process.argv.slice(2);
const now = Date.parse(at ?? "");
if (root === undefined || Number.isNaN(now)) {
  process.stderr.write("usage: reboot-pass.ts ROOT ISO-TIME\n");
  process.exit(2);
}
const clock: Clock = { ...systemClock, now: () => new Date(now) };
const reconciler = await reconcilerOn(root, {
  sysext: binarySysext(hostPaths(root)),
  preflight: null,
  clock,
  log: createLogger(stderrSink(), "debug"),
  // Its own PID namespace's /proc: the stand-in sandbox beside it, and no other test's.
  sandboxes: () => countKataSandboxes(),
});
const outcome = await reconciler.run({ kind: "reconcile" });
process.stdout.write(
  `${JSON.stringify({ result: outcome.result, reboot: outcome.reboot ?? null, requeueAfterMs: outcome.requeueAfterMs ?? null })}\n`,
);
