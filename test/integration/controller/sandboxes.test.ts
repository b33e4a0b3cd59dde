// countKataSandboxes: one containerd-shim-kata-v2 process per Kata sandbox, read off /proc. Exact counts on a
// /proc-shaped tree; on the real /proc, a real process whose argv[0] is the shim's name.
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { countKataSandboxes } from "../../../src/controller/observe.ts";

const dir = mkdtempSync(join(tmpdir(), "kata-sandboxes-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A /proc with these processes: pid -> argv (null: the process ended while being read, no cmdline left). */
function procTree(name: string, processes: Record<string, string[] | null>): string {
  const proc = join(dir, name);
  mkdirSync(proc);
  mkdirSync(join(proc, "self"));
  writeFileSync(join(proc, "self", "cmdline"), "containerd-shim-kata-v2\0");
  for (const [pid, argv] of Object.entries(processes)) {
    mkdirSync(join(proc, pid));
    if (argv !== null) writeFileSync(join(proc, pid, "cmdline"), `${argv.join("\0")}\0`);
  }
  return proc;
}

describe("countKataSandboxes", () => {
  it.each<[string, Record<string, string[] | null>, number]>([
    ["none running", { "1": ["/usr/lib/systemd/systemd"], "40": ["containerd"] }, 0],
    [
      "one shim per sandbox, by argv[0]'s name wherever it lives",
      {
        "100": ["/usr/bin/containerd-shim-kata-v2", "-namespace", "k8s.io", "-id", "a"],
        "101": ["/opt/kata/bin/containerd-shim-kata-v2", "-namespace", "k8s.io", "-id", "b"],
        "102": ["containerd-shim-runc-v2", "-namespace", "k8s.io"],
      },
      2,
    ],
    ["a shim named only in an argument is not one", { "7": ["/bin/grep", "containerd-shim-kata-v2"] }, 0],
    ["a process that ended while read counts as none", { "9": null, "10": ["containerd-shim-kata-v2"] }, 1],
    [
      "an argv[0] longer than one read of it",
      {
        "11": [`/${"d/".repeat(3000)}containerd-shim-kata-v2`, "-id", "c"],
        "12": [`/${"d/".repeat(3000)}containerd-shim-runc-v2`, "containerd-shim-kata-v2"],
      },
      1,
    ],
  ])("%s", async (name, processes, expected) => {
    expect(await countKataSandboxes(procTree(name.replace(/\W+/g, "-"), processes))).toBe(expected);
  });

  it("a /proc it cannot read counts as none", async () => {
    expect(await countKataSandboxes(join(dir, "missing"))).toBe(0);
  });

  it("sees a real shim process in this machine's /proc", async () => {
    const shim = join(dir, "containerd-shim-kata-v2");
    copyFileSync("/bin/sleep", shim);
    const child = spawn(shim, ["30"], { stdio: "ignore" });
    try {
      await new Promise((resolve, reject) => child.once("spawn", resolve).once("error", reject));
      // At least ours: tests running at the same time may have stand-ins of their own.
      expect(await countKataSandboxes()).toBeGreaterThanOrEqual(1);
    } finally {
      child.kill("SIGKILL");
    }
  });
});
