// What containerd loaded, judged the way the stage judges it after a restart: the process's /proc/PID/cmdline
// (a fixture under the root) names the file, and the real containerd 1.6 its argv[0] names dumps it.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { confirmLoaded } from "../../../src/containerd/confirm.ts";
import { renderContainerdConfig } from "../../../src/containerd/registration.ts";
import { hostPaths } from "../../../src/paths.ts";
import type { ServiceInfo } from "../../../src/systemd/manager.ts";
import { skipWithout } from "../../helpers/needs.ts";

const noContainerd = skipWithout(
  (() => {
    try {
      execFileSync("containerd", ["--version"], { stdio: "ignore" });
      return null;
    } catch {
      return "containerd is not installed (Debian package containerd)";
    }
  })(),
  "the containerd confirmLoaded test",
);

const OURS = "/etc/kata-sysextd/containerd.toml";
const DROP_IN = "/etc/systemd/system/containerd.service.d/50-kata-sysextd.conf";
const FIXTURES = join(import.meta.dirname, "../../fixtures/containerd");
const HANDLERS = [{ name: "kata", configPath: "/opt/kata/share/defaults/kata-containers/configuration-clh.toml" }];
const roots: string[] = [];
afterAll(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

/** A root where containerd (pid 77, the real binary) runs `argv`, and our file is `base` with the runtimes merged. */
function host(argv: string[], base: string): string {
  const root = mkdtempSync(join(tmpdir(), "kata-confirm-"));
  roots.push(root);
  mkdirSync(join(root, "proc/77"), { recursive: true });
  writeFileSync(join(root, "proc/77/cmdline"), `${argv.join("\0")}\0`);
  mkdirSync(join(root, "usr/bin"), { recursive: true });
  symlinkSync("/usr/bin/containerd", join(root, "usr/bin/containerd"));
  mkdirSync(join(root, "etc/kata-sysextd"), { recursive: true });
  const text = renderContainerdConfig(readFileSync(join(FIXTURES, base), "utf8"), HANDLERS, base);
  writeFileSync(join(root, OURS), text);
  return root;
}

const info = (dropInPaths: string[] = [DROP_IN]): ServiceInfo => ({
  loadState: "loaded",
  fragmentPath: "/usr/lib/systemd/system/containerd.service",
  dropInPaths,
  execStart: [],
  environment: [],
  mainPid: 77,
});

describe.skipIf(noContainerd)("confirmLoaded (real containerd 1.6 config dump)", () => {
  it("passes when the process reads our version 2 file and containerd's dump has the handler", async () => {
    const root = host(["/usr/bin/containerd", "--config", OURS], "flatcar-v2.toml");
    await expect(confirmLoaded(info(), OURS, DROP_IN, ["kata"], hostPaths(root).host)).resolves.toBeUndefined();
  });

  it("fails, naming the drop-in that wins, when the process reads another file", async () => {
    const root = host(["/usr/bin/containerd"], "flatcar-v2.toml");
    const later = "/etc/systemd/system/containerd.service.d/override.conf";
    await expect(
      confirmLoaded(info([DROP_IN, later]), OURS, DROP_IN, ["kata"], hostPaths(root).host),
    ).rejects.toMatchObject({
      code: "containerd-failed",
      message: `containerd (pid 77) runs "/usr/bin/containerd", which reads /etc/containerd/config.toml, not ${OURS}: ${later} sorts after 50-kata-sysextd.conf and overrides it`,
    });
  });

  it("fails when this containerd does not read the file as written: version 3 on containerd 1.x", async () => {
    const root = host(["/usr/bin/containerd", "--config", OURS], "v3-default.toml");
    await expect(confirmLoaded(info(), OURS, DROP_IN, ["kata"], hostPaths(root).host)).rejects.toMatchObject({
      message: expect.stringMatching(
        /config dump of .* lacks the runtime kata: .*a version 3 file needs containerd 2\.x/,
      ),
    });
  });
});
