// containerd, as the canary needs it, through `ctr` (it ships with containerd, also on Flatcar): import an image,
// run one container to its end, and remove what a run left behind. Every call is one ctr process (src/exec.ts);
// containerd's own error text is passed on as it is, since it names what failed.
import { mkdir } from "node:fs/promises";
import { KataError } from "../errors.ts";
import { run } from "../exec.ts";

/** The containerd namespace the canary works in: nothing else lives there, so all of it is ours to clean. */
export const CANARY_NAMESPACE = "kata-sysextd";

export type RunOutcome =
  | { kind: "exited"; exitCode: number; stdout: string; stderr: string }
  | { kind: "timeout"; detail: string };

export interface RunRequest {
  id: string;
  ref: string;
  /** A containerd runtime type, e.g. io.containerd.kata.v2 or io.containerd.runc.v2. */
  runtime: string;
  /** The runtime's own configuration (Kata's configuration.toml), as the CRI handler would pass it. */
  runtimeConfigPath: string | null;
  timeoutMs: number;
}

export interface ContainerdClient {
  /** Imports an OCI layout tarball; containerd's error text when it cannot. */
  importImage(file: string, timeoutMs: number): Promise<void>;
  /** Runs the image's entrypoint to its end and removes the container (`ctr run --rm`). */
  run(req: RunRequest): Promise<RunOutcome>;
  /** Removes a container with its task and snapshot, whatever state a cut-short run left them in. */
  remove(id: string): Promise<void>;
  /** Containers and active snapshots whose names start with `prefix`. */
  leftovers(prefix: string): Promise<string[]>;
}

/** `ctr run` says this when the image is not in the namespace yet. */
export const isImageMissing = (stderr: string, ref: string): boolean => stderr.includes(`image "${ref}": not found`);

/**
 * `fifoDir` holds the FIFOs ctr hands containerd for the container's output: it must be a directory both can see
 * and this process can write, which /run/containerd/fifo (ctr's default) is not from a unit with
 * ProtectSystem=strict, nor from a private mount namespace.
 */
export function ctrClient(address: string, fifoDir: string, ctr = "ctr"): ContainerdClient {
  // ctr waits 10 s for a socket that is not there; a containerd that does not answer in 3 s is down.
  const base = ["--address", address, "--connect-timeout", "3s", "--namespace", CANARY_NAMESPACE];
  const ctrRun = (args: string[], timeoutMs = 30_000) => run(ctr, [...base, ...args], { timeoutMs });
  const failed = (what: string, stderr: string) =>
    new KataError("canary-failed", `${what}: ${stderr.trim().split("\n").pop() ?? "no error text"}`, {
      remedy: `check that containerd answers on ${address} ([containerd] address) and \`ctr --address ${address} version\``,
    });

  return {
    async importImage(file, timeoutMs) {
      const result = await ctrRun(["images", "import", file], timeoutMs);
      if (result.exitCode !== 0) throw failed(`importing the canary image ${file} failed`, result.stderr);
    },
    async run(req) {
      await mkdir(fifoDir, { recursive: true, mode: 0o700 });
      const args = ["run", "--rm", "--fifo-dir", fifoDir, "--runtime", req.runtime];
      if (req.runtimeConfigPath !== null) args.push("--runtime-config-path", req.runtimeConfigPath);
      try {
        const result = await ctrRun([...args, req.ref, req.id], req.timeoutMs);
        return { kind: "exited", ...result };
      } catch (err) {
        if (err instanceof KataError && err.code === "subprocess-timeout")
          return { kind: "timeout", detail: err.message };
        throw err;
      }
    },
    async remove(id) {
      // Each step tolerates "not found": a run cut short may have got any distance. `task rm -f` kills a task
      // that still runs; `containers rm` takes its snapshot along; the snapshot is removed on its own when a
      // container was never created around it.
      const notFound = (stderr: string) => /not found|does not exist/.test(stderr);
      for (const args of [
        ["tasks", "rm", "--force", id],
        ["containers", "rm", id],
        ["snapshots", "rm", id],
      ]) {
        // A task whose shim is going away as it is killed answers "ttrpc: closed" once; the next try finds it gone.
        // containerd not answering at all is not retried: the next start sweeps what is left.
        let result = await ctrRun(args);
        for (let retry = 0; retry < 3 && result.exitCode !== 0 && !notFound(result.stderr); retry++) {
          if (result.stderr.includes("failed to dial")) break;
          result = await ctrRun(args);
        }
        if (result.exitCode !== 0 && !notFound(result.stderr)) {
          throw failed(`removing canary ${id} failed`, result.stderr);
        }
      }
    },
    async leftovers(prefix) {
      const containers = await ctrRun(["containers", "list", "--quiet"]);
      if (containers.exitCode !== 0) throw failed("listing canary containers failed", containers.stderr);
      const snapshots = await ctrRun(["snapshots", "list"]);
      if (snapshots.exitCode !== 0) throw failed("listing canary snapshots failed", snapshots.stderr);
      const ids = new Set(containers.stdout.split("\n").filter((line) => line.startsWith(prefix)));
      for (const line of snapshots.stdout.split("\n").slice(1)) {
        const key = line.split(/\s+/)[0] ?? "";
        if (key.startsWith(prefix)) ids.add(key);
      }
      return [...ids].sort();
    },
  };
}
