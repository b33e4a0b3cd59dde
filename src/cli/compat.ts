// kata-sysextctl compat: would systemd-sysext merge this extension on this host? A pure decision over two
// files; exit 0 compatible, 1 not compatible, 2 usage or unreadable input (docs/interface.md).
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { KataError } from "../errors.ts";
import { compatible } from "../release/compat.ts";
import { validateExtensionName } from "../release/names.ts";
import {
  type ExtensionRelease,
  hostArchitecture,
  readExtensionRelease,
  readHostRelease,
  SYSTEMD_ARCHITECTURES,
} from "../release/os-release.ts";
import { EXIT } from "./io.ts";

/** The part of CommandIo (./io.ts) this command uses; plain objects with write() do in tests. */
export interface CliIo {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
}

export const COMPAT_USAGE =
  "usage: kata-sysextctl compat --os-release FILE --extension-release FILE [--name NAME] [--arch ARCH] [--json]\n";
const RELEASE_PREFIX = "extension-release.";
const DEFAULT_NAME = "kata-containers";

export async function compatCommand(argv: string[], io: CliIo): Promise<number> {
  const usage = (message: string): number => {
    io.stderr.write(`kata-sysextctl compat: ${message}\n${COMPAT_USAGE}`);
    return EXIT.usage;
  };
  let values: { [key: string]: string | boolean | undefined };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        "os-release": { type: "string" },
        "extension-release": { type: "string" },
        name: { type: "string" },
        arch: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    return usage(err instanceof Error ? err.message : String(err));
  }
  if (values.help === true) {
    io.stdout.write(COMPAT_USAGE);
    return EXIT.ok;
  }
  const osRelease = values["os-release"];
  const extRelease = values["extension-release"];
  if (typeof osRelease !== "string" || osRelease === "") return usage("--os-release FILE is required");
  if (typeof extRelease !== "string" || extRelease === "") return usage("--extension-release FILE is required");

  // The file's own name says which extension it belongs to (extension-release.<name>); --name overrides.
  const fileName = basename(extRelease);
  const named = fileName.startsWith(RELEASE_PREFIX) ? fileName.slice(RELEASE_PREFIX.length) : null;
  const name = typeof values.name === "string" ? values.name : (named ?? DEFAULT_NAME);
  const validName = validateExtensionName(name);
  if (!validName.ok) return usage(`--name: ${validName.error.message}`);
  const arch = typeof values.arch === "string" ? values.arch : hostArchitecture();
  if (!SYSTEMD_ARCHITECTURES.includes(arch)) {
    return usage(`--arch: "${arch}" is not a systemd architecture name (e.g. x86-64, arm64)`);
  }

  let ext: ExtensionRelease;
  let host: Awaited<ReturnType<typeof readHostRelease>>;
  try {
    host = await readHostRelease(osRelease);
    ext = await readExtensionRelease(extRelease);
  } catch (err) {
    const message = err instanceof KataError ? err.message : String(err);
    const remedy = err instanceof KataError && err.remedy !== undefined ? ` (${err.remedy})` : "";
    io.stderr.write(`kata-sysextctl compat: ${message}${remedy}\n`);
    return EXIT.usage;
  }

  // systemd-sysext only reads extension-release.<image name>; a file for another name is as good as none.
  const mismatch = named !== null && named !== name;
  const decision = compatible(host, mismatch ? null : ext, { name, arch });
  if (mismatch) decision.reasons.push(`file name: ${fileName} belongs to extension "${named}", not "${name}"`);

  if (values.json === true) {
    io.stdout.write(`${JSON.stringify({ compatible: decision.compatible, reasons: decision.reasons })}\n`);
  } else {
    const on = `${host.id ?? "unknown OS"} ${host.versionId ?? ""}`.trim();
    const head = decision.compatible
      ? `compatible: systemd-sysext would merge ${name} on ${on} (${arch})`
      : `not compatible: systemd-sysext would not merge ${name} on ${on} (${arch})`;
    io.stdout.write(`${head}\n${decision.reasons.map((r) => `  ${r}\n`).join("")}`);
  }
  return decision.compatible ? EXIT.ok : EXIT.failed;
}
