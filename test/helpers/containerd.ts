// containerd for tests: what the registration told it (read back as containerd would), and a private instance
// that really starts containers.
import { execFileSync, spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "smol-toml";
import type { StoredImage } from "../../src/store/store.ts";

type Runtimes = Record<string, { options?: { ConfigPath?: unknown } }>;

/** Each registered runtime's options.ConfigPath in `root`'s merged containerd configuration. */
export function registeredConfigPaths(
  root: string,
  configFile = "/etc/kata-sysextd/containerd.toml",
): Record<string, unknown> {
  const doc = parse(readFileSync(join(root, configFile), "utf8")) as {
    plugins: { "io.containerd.grpc.v1.cri": { containerd: { runtimes: Runtimes } } };
  };
  const runtimes = doc.plugins["io.containerd.grpc.v1.cri"].containerd.runtimes;
  return Object.fromEntries(Object.entries(runtimes).map(([name, r]) => [name, r.options?.ConfigPath]));
}

/**
 * A private containerd (Debian's 1.6) with its own root, state and sockets under a temp dir, as the canary tests
 * need it: real containers through runc, outside nspawn (ENVIRONMENT: runc cannot start containers inside it).
 */
export interface PrivateContainerd {
  address: string;
  dir: string;
  /** `ctr` against it in `namespace`; stdout, or throws with stderr. */
  ctr(namespace: string, ...args: string[]): string;
  /** Containers, tasks and active (not committed image) snapshots in `namespace`: what a canary must not leave. */
  leftovers(namespace: string): { containers: string[]; tasks: string[]; snapshots: string[] };
  stop(): Promise<void>;
}

export async function startContainerd(): Promise<PrivateContainerd> {
  const dir = mkdtempSync(join(tmpdir(), "kata-ctrd-"));
  const address = join(dir, "containerd.sock");
  const config = join(dir, "config.toml");
  writeFileSync(
    config,
    [
      "version = 2",
      `root = "${dir}/root"`,
      `state = "${dir}/state"`,
      "[grpc]",
      `  address = "${address}"`,
      "[ttrpc]",
      `  address = "${address}.ttrpc"`,
      // Only what a canary needs: no CRI (it would take the host's CNI and its 10 s of start-up).
      `disabled_plugins = ["io.containerd.grpc.v1.cri"]`,
      "",
    ].join("\n"),
  );
  const log = openSync(join(dir, "containerd.log"), "a");
  const child = spawn("containerd", ["--config", config], { stdio: ["ignore", log, log] });
  closeSync(log);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const ctr = (namespace: string, ...args: string[]): string =>
    execFileSync("ctr", ["--address", address, "--namespace", namespace, ...args], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      ctr("default", "version");
      break;
    } catch (err) {
      if (Date.now() > deadline || child.exitCode !== null) {
        child.kill("SIGKILL");
        const text = readFileSync(join(dir, "containerd.log"), "utf8");
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`containerd did not start: ${(err as Error).message}\n${text.slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const lines = (text: string) => text.split("\n").filter((l) => l.trim() !== "");
  return {
    address,
    dir,
    ctr,
    leftovers: (namespace) => ({
      containers: lines(ctr(namespace, "containers", "list", "--quiet")),
      tasks: lines(ctr(namespace, "tasks", "list", "--quiet")),
      snapshots: lines(ctr(namespace, "snapshots", "list"))
        .slice(1)
        .filter((l) => !/\sCommitted\s*$/.test(l)),
    }),
    async stop() {
      // Tasks first: their shims outlive containerd otherwise, and keep mounts under the temp dir busy.
      for (const namespace of lines(ctr("default", "namespaces", "list", "--quiet"))) {
        for (const task of lines(ctr(namespace, "tasks", "list", "--quiet"))) {
          try {
            ctr(namespace, "tasks", "rm", "--force", task);
          } catch {
            // already gone
          }
        }
      }
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null) child.kill("SIGKILL");
      // containerd's overlay snapshots may still be mounted after a hard stop.
      const mounts = readFileSync("/proc/self/mounts", "utf8").split("\n");
      for (const target of mounts.map((m) => m.split(" ")[1] ?? "").filter((t) => t.startsWith(`${dir}/`))) {
        execFileSync("umount", ["-l", target]);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An active Kata image as the store records it; only the configurations it ships matter to the registration. */
export function kataImage(kataConfigs: string[]): StoredImage {
  return {
    file: "kata-containers-3.32.0-x86-64.raw",
    name: "kata-containers",
    version: "3.32.0",
    arch: "x86-64",
    sha256: "",
    bytes: 0,
    trust: "checksum",
    verifiedAt: "",
    extensionRelease: "ID=_any\n",
    kataConfigs,
    files: kataConfigs,
    path: "",
  };
}
