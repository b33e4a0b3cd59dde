// `npm start`: the daemon against a demo, on this machine, without touching the host. A sandbox root under
// ./demo (a Flatcar os-release, empty /etc/extensions), a release server on 127.0.0.1 serving kata-like sysext
// images built from the project's fixtures with mksquashfs, and the real daemon running with --root against
// both. A short tour first: a newer release is published and taken (`refresh`), then rolled back (`rollback`),
// which holds it (`versions`). Then it stays up for the user to try the same; every way of stopping it (Ctrl-C,
// SIGTERM or SIGINT to npm, npm killed) stops the daemon too.
//
// KATA_SYSEXTD_DEMO_DIR (default ./demo) and KATA_SYSEXTD_DEMO_PORT (default 8720) move it, for tests.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "../src/api/client.ts";
import { ROOT_ENV } from "../src/cli/ctl.ts";
import { hostPaths } from "../src/paths.ts";
import type { StatusDocument } from "../src/status.ts";
import { buildImage, writeOsRelease } from "../test/helpers/images.ts";
import { publishRelease, type ReleaseServer, startReleaseServer } from "../test/helpers/release-server.ts";

const project = resolve(import.meta.dirname, "..");
const demo = resolve(process.env.KATA_SYSEXTD_DEMO_DIR ?? join(project, "demo"));
const port = process.env.KATA_SYSEXTD_DEMO_PORT ?? "8720";
const root = join(demo, "root");
const published = join(demo, "published");
const socket = hostPaths(root).apiSocket;
const say = (line: string): void => {
  process.stderr.write(`demo: ${line}\n`);
};

// ---- stopping: whatever way it comes, it stops the daemon and the server, once ----
let daemon: ChildProcess | null = null;
let server: ReleaseServer | null = null;
let stopping = false;
const children = new Set<ChildProcess>();

async function stop(why: string, code = 0): Promise<never> {
  if (!stopping) {
    stopping = true;
    say(`stopping (${why})`);
    for (const child of children) child.kill("SIGTERM");
    if (daemon !== null && daemon.exitCode === null && daemon.signalCode === null) {
      const exited = new Promise((done) => daemon?.once("exit", done));
      daemon.kill("SIGTERM");
      await exited;
    }
    await server?.close();
    process.exit(code);
  }
  return new Promise<never>(() => {});
}

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => void stop(signal));
// npm forwards SIGINT and SIGTERM to its script (`exec` in package.json makes that this process); if npm itself
// is killed, nothing is forwarded: this process is handed to another parent, which is how it notices.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) void stop("its parent process is gone");
}, 500).unref();

// ---- the demo host and its release server ----
rmSync(demo, { recursive: true, force: true });
mkdirSync(published, { recursive: true });
writeOsRelease(root, "4593.2.5");
for (const dir of ["etc/extensions", "etc/kata-sysextd", "opt", "var/lib", "run"]) {
  mkdirSync(join(root, dir), { recursive: true });
}
const image = (version: string) => ({
  version,
  content: buildImage({ version }, join(demo, "build", `kata-containers-${version}.raw`)),
});
const older = [image("3.30.0"), image("3.31.1")];
const newest = image("3.32.0");
await publishRelease(published, { images: older });
server = await startReleaseServer(published);

writeFileSync(
  join(root, "etc/kata-sysextd/config.toml"),
  `# written by npm start (scripts/demo.ts)
[source]
url = "${server.url}"
name = "kata-containers"

[policy]
versions = ">=3.21.0"
# The demo's root runs no Kata sandboxes; the ones this machine may run (or a test's stand-ins) are not its own.
activation = "force"

[api]
listen = "127.0.0.1:${port}"

[containerd]
enabled = false
`,
);

say(`release server ${server.url} publishing kata-containers 3.30.0, 3.31.1`);
say(`sandbox root ${root}`);

// The daemon dies with this process even if it is killed (SIGKILL), through the kernel's parent-death signal.
const daemonArgv = [process.execPath, join(project, "bin/kata-sysextd.js"), "--root", root];
const [command = process.execPath, ...args] = existsSync("/usr/bin/setpriv")
  ? ["/usr/bin/setpriv", "--pdeathsig", "TERM", "--", ...daemonArgv]
  : daemonArgv;
daemon = spawn(command, args, { stdio: "inherit", env: { ...process.env, KATA_SYSEXTD_LOG: "stderr" } });
daemon.on("exit", (code, signal) => {
  if (!stopping) void stop(`the daemon exited (${signal ?? `code ${code}`})`, code ?? 1);
});

// ---- the tour ----
const ctlEnv = { ...process.env, [ROOT_ENV]: root };
/** Runs `kata-sysextctl ARGS` as the user would, its output on this terminal. */
async function ctl(...argv: string[]): Promise<number> {
  process.stderr.write(`\n$ kata-sysextctl ${argv.join(" ")}\n`);
  const child = spawn(process.execPath, [join(project, "bin/kata-sysextctl.js"), ...argv], {
    stdio: ["ignore", "inherit", "inherit"],
    env: ctlEnv,
  });
  children.add(child);
  const code = await new Promise<number>((done) => child.on("exit", (c) => done(c ?? 1)));
  children.delete(child);
  return code;
}

/** Waits for the daemon's first pass to end (its socket answers and the state is no longer "resolving"). */
async function firstPass(): Promise<StatusDocument> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    try {
      const res = await request({ socketPath: socket }, "GET", "/status", { timeoutMs: 5000 });
      const doc = JSON.parse(res.body) as StatusDocument;
      if (doc.lastReconcile !== null) return doc;
    } catch {
      // not listening yet
    }
    await sleep(200);
  }
  return stop("the daemon's first pass did not end within 2 minutes", 1);
}

const first = await firstPass();
say(`the first pass activated kata-containers ${first.extension.active ?? "(none)"}`);
await publishRelease(published, { images: [...older, newest] });
say("published kata-containers 3.32.0: the next pass takes it");
await ctl("refresh");
say("roll back to 3.31.1: 3.32.0 is held, so later passes skip it");
await ctl("rollback");
await ctl("versions");

process.stderr.write(`
demo: ready. In another terminal (kata-sysextctl also finds this demo by itself while it runs):
  export ${ROOT_ENV}=${root}
  curl -s localhost:${port}/status
  npx kata-sysextctl status
  npx kata-sysextctl refresh --release-holds     # lift the hold: 3.32.0 is taken again
demo: the demo reports "degraded" on purpose: its sandbox root has no /proc, /sys or /dev for the preflight.
demo: Ctrl-C stops it.
`);
