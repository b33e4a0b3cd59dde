// containerd serving the Kata runtime handlers, judged as the daemon confirms its registration: by the file the
// running containerd's own command line (/proc/PID/cmdline under --root) makes it read, and the runtimes that file
// has where its config version keeps them. Without a running containerd: the file our drop-in selects.
import { readdir, readFile, stat } from "node:fs/promises";
import { commandLine, runtimesIn } from "../../containerd/confirm.ts";
import { isTable } from "../../containerd/schema.ts";
import { configOfCommandLine } from "../../containerd/unit.ts";
import type { PreflightCheck } from "../../status.ts";
import { type Check, result } from "../check.ts";

const SOCKET = "/run/containerd/containerd.sock";
const RUNTIME_TYPE = "io.containerd.kata.v2";

export const containerd: Check = {
  id: "containerd",
  group: "host",
  async run(ctx) {
    const out: PreflightCheck[] = [];
    const running = await stat(ctx.host(SOCKET)).then(
      (st) => st.isSocket() || (ctx.fixtureRoot && st.isFile()),
      () => false,
    );
    out.push(
      running
        ? result("containerd-running", "pass", `containerd socket ${SOCKET} present`)
        : result("containerd-running", "warn", `containerd is not running (no ${SOCKET})`, {
            remedy: "systemctl enable --now containerd",
          }),
    );
    out.push(await handler(ctx.host, ctx.containerd));
    return out;
  },
};

async function handler(
  host: (p: string) => string,
  files: { configFile: string; unitDropIn: string } | null,
): Promise<PreflightCheck> {
  if (files === null) return result(ID, "skip", "containerd integration disabled ([containerd] enabled = false)");
  const running = await runningContainerd(host);
  if (running === null) return notRunning(host, files);
  const { configFile, unitDropIn } = files;
  const reads = configOfCommandLine(running.argv);
  const who = `containerd (pid ${running.pid}) reads ${reads}`;
  const text = await readFile(host(reads), "utf8").catch(() => null);
  if (text === null) {
    return result(ID, reads === configFile ? "warn" : "fail", `${who}, which is missing`, { remedy: REGISTER });
  }
  const kata = kataRuntimes(text);
  if (typeof kata === "string") return result(ID, "fail", `${who}: ${kata}`, { remedy: `fix ${reads}` });
  const found = `${kata.join(", ")} (${RUNTIME_TYPE})`;
  if (reads !== configFile) {
    const why = `not ${configFile}, which kata-sysextd writes: ${unitDropIn} did not take effect or containerd was not restarted since`;
    return kata.length > 0
      ? result(ID, "warn", `${who}, which registers ${found} on its own; ${why}`, { remedy: OVERRIDE(unitDropIn) })
      : result(ID, "fail", `${who}, which registers no Kata runtime: ${why}`, { remedy: OVERRIDE(unitDropIn) });
  }
  if (kata.length === 0) {
    return result(
      ID,
      "fail",
      `${who}, which registers no runtime of type ${RUNTIME_TYPE} where its version keeps them`,
      {
        remedy: `remove ${configFile} and run \`kata-sysextctl refresh\` to rewrite it`,
      },
    );
  }
  const dropIn = await readFile(host(unitDropIn), "utf8").catch(() => "");
  if (!dropIn.includes(configFile)) {
    return result(ID, "warn", `${who}, which registers ${found}, but ${unitDropIn} no longer selects it`, {
      remedy: "run `kata-sysextctl refresh` to rewrite the containerd.service drop-in",
    });
  }
  return result(ID, "pass", `${who}, which registers ${found}`);
}

const ID = "containerd-handler";
const REGISTER = "run `kata-sysextctl refresh`: the daemon registers the runtimes when it activates the extension";
const OVERRIDE = (unitDropIn: string) =>
  `run \`kata-sysextctl refresh\`; if it persists, \`systemctl cat containerd\` shows the ExecStart or CONTAINERD_CONFIG override sorting after ${unitDropIn}`;

/** Without a running containerd, what it will load when it starts: our file, if the drop-in selects it. */
async function notRunning(
  host: (p: string) => string,
  { configFile, unitDropIn }: { configFile: string; unitDropIn: string },
): Promise<PreflightCheck> {
  const text = await readFile(host(configFile), "utf8").catch(() => null);
  if (text === null) {
    return result(ID, "warn", `${configFile} missing: the kata runtime handler is not registered`, {
      remedy: REGISTER,
    });
  }
  const kata = kataRuntimes(text);
  if (typeof kata === "string" || kata.length === 0) {
    return result(
      ID,
      "fail",
      `${configFile} registers no runtime of type ${RUNTIME_TYPE}${typeof kata === "string" ? `: ${kata}` : ""}`,
      {
        remedy: `remove ${configFile} and run \`kata-sysextctl refresh\` to rewrite it`,
      },
    );
  }
  const dropIn = await readFile(host(unitDropIn), "utf8").catch(() => "");
  if (!dropIn.includes(configFile)) {
    return result(ID, "warn", `${configFile} registers ${kata.join(", ")}, but ${unitDropIn} does not select it`, {
      remedy: "run `kata-sysextctl refresh` to rewrite the containerd.service drop-in, then restart containerd",
    });
  }
  return result(
    ID,
    "pass",
    `containerd is not running; when it starts it reads ${configFile}, which registers ${kata.join(", ")} (${RUNTIME_TYPE})`,
  );
}

/** The running containerd daemon under --root's /proc (its comm is "containerd"; shims have their own names). */
async function runningContainerd(host: (p: string) => string): Promise<{ pid: number; argv: string[] } | null> {
  const pids = (await readdir(host("/proc")).catch(() => [] as string[]))
    .filter((d) => /^[0-9]+$/.test(d))
    .map(Number)
    .sort((a, b) => a - b);
  for (const pid of pids) {
    const comm = await readFile(host(`/proc/${pid}/comm`), "utf8").catch(() => "");
    if (comm.trim() !== "containerd") continue;
    const argv = await commandLine(host(`/proc/${pid}/cmdline`));
    if (argv !== null) return { pid, argv };
  }
  return null;
}

/** Names of the runtimes of type io.containerd.kata.v2 where the file's config version keeps runtimes. */
function kataRuntimes(text: string): string[] | string {
  const runtimes = runtimesIn(text);
  if (typeof runtimes === "string") return runtimes;
  return Object.entries(runtimes)
    .filter(([, r]) => isTable(r) && r.runtime_type === RUNTIME_TYPE)
    .map(([name]) => name)
    .sort();
}
