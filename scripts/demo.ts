// `npm start`: the daemon against an embedded default, on this machine, without touching the host.
// A sandbox root under ./demo (a Flatcar os-release, empty /etc/extensions), a release server on 127.0.0.1
// serving kata-like sysext images built from the project's fixtures with mksquashfs, and the real daemon
// running with --root against both. Then: curl localhost:8720/status
import { spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { buildImage, writeOsRelease } from "../test/helpers/images.ts";
import { publishRelease, startReleaseServer } from "../test/helpers/release-server.ts";

const project = resolve(import.meta.dirname, "..");
const demo = join(project, "demo");
const root = join(demo, "root");
const published = join(demo, "published");

rmSync(demo, { recursive: true, force: true });
mkdirSync(published, { recursive: true });
writeOsRelease(root, "4593.2.5");
for (const dir of ["etc/extensions", "etc/kata-sysextd", "opt", "var/lib", "run"]) {
  mkdirSync(join(root, dir), { recursive: true });
}

const versions = ["3.30.0", "3.31.1", "3.32.0"];
const images = versions.map((version) => ({
  version,
  content: buildImage({ version }, join(demo, "build", `kata-containers-${version}.raw`)),
}));
await publishRelease(published, { images });
const server = await startReleaseServer(published);

writeFileSync(
  join(root, "etc/kata-sysextd/config.toml"),
  `# written by npm start (scripts/demo.ts)
[source]
url = "${server.url}"
name = "kata-containers"

[policy]
versions = ">=3.21.0"

[api]
listen = "127.0.0.1:8720"

[containerd]
enabled = false
`,
);

process.stderr.write(
  `demo: release server ${server.url} publishing kata-containers ${versions.join(", ")}\n` +
    `demo: sandbox root ${root}\n` +
    "demo: try  curl -s localhost:8720/status  (Ctrl-C stops)\n",
);

const daemon = spawn(process.execPath, [join(project, "bin/kata-sysextd.js"), "--root", root], {
  stdio: "inherit",
  env: { ...process.env, KATA_SYSEXTD_LOG: "stderr" },
});
const stop = () => daemon.kill("SIGTERM");
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
const code = await new Promise<number>((done) => daemon.on("exit", (c) => done(c ?? 1)));
await server.close();
process.exitCode = code;
