// Reads back what the registration told containerd, as containerd would: the merged configuration's runtimes.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "smol-toml";

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
