// kata-sysextctl compat: would systemd-sysext merge this extension on this host? A decision over the host's
// os-release and either an extension-release file or an image (squashfs, as published or quarantined), whose own
// release file is read as systemd-sysext 252 reads it (inspect.ts); exit 0 compatible, 1 not compatible, 2 usage
// or unreadable input (docs/interface.md).
import { stat } from "node:fs/promises";
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { KataError } from "../errors.ts";
import { compatible } from "../release/compat.ts";
import { splitImageFileName, validateExtensionName } from "../release/names.ts";
import {
  type ExtensionRelease,
  type HostRelease,
  hostArchitecture,
  parseExtensionRelease,
  readExtensionRelease,
  readHostRelease,
  SYSTEMD_ARCHITECTURES,
} from "../release/os-release.ts";
import { detectFormat, type ImageContents, inspectImage, payloadProblems } from "../sysext/inspect.ts";
import { EXIT } from "./io.ts";

/** The part of CommandIo (./io.ts) this command uses; plain objects with write() do in tests. */
export interface CliIo {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
}

export const COMPAT_USAGE =
  "usage: kata-sysextctl compat --os-release FILE --extension-release FILE|IMAGE [--name NAME] [--arch ARCH] [--json]\n";
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

  // An image (as published, or from the quarantine) is judged by its own release file, never read as one.
  const format = await imageFormat(extRelease);
  // The file's own name says which extension it belongs to (extension-release.<name>, or <name>-<version>-<arch>.raw
  // for an image); --name overrides.
  const fileName = basename(extRelease);
  const named =
    format !== null
      ? imageExtensionName(fileName)
      : fileName.startsWith(RELEASE_PREFIX)
        ? fileName.slice(RELEASE_PREFIX.length)
        : null;
  const name = typeof values.name === "string" ? values.name : (named ?? DEFAULT_NAME);
  const validName = validateExtensionName(name);
  if (!validName.ok) return usage(`--name: ${validName.error.message}`);
  const arch = typeof values.arch === "string" ? values.arch : hostArchitecture();
  if (!SYSTEMD_ARCHITECTURES.includes(arch)) {
    return usage(`--arch: "${arch}" is not a systemd architecture name (e.g. x86-64, arm64)`);
  }

  const unreadable = (err: unknown): number => {
    io.stderr.write(`kata-sysextctl compat: ${withRemedy(err)}\n`);
    return EXIT.usage;
  };
  let ext: ExtensionRelease;
  let host: HostRelease;
  try {
    host = await readHostRelease(osRelease);
    if (format !== null)
      return await imageCompat({ path: extRelease, host, name, arch, json: values.json === true, io });
    ext = await readExtensionRelease(extRelease);
  } catch (err) {
    return unreadable(err);
  }

  // systemd-sysext only reads extension-release.<image name>; a file for another name is as good as none.
  const mismatch = named !== null && named !== name;
  const decision = compatible(host, mismatch ? null : ext, { name, arch });
  if (mismatch) decision.reasons.push(`file name: ${fileName} belongs to extension "${named}", not "${name}"`);

  return answer(io, values.json === true, {
    host,
    name,
    arch,
    compatible: decision.compatible,
    reasons: decision.reasons,
  });
}

interface Answer {
  host: HostRelease;
  name: string;
  arch: string;
  compatible: boolean;
  reasons: string[];
  /** Not compatible although systemd-sysext would merge it: kata-sysextd refuses the image (inspect.ts). */
  refusedByUs?: boolean;
  /** For an image: where its extension-release was read, `<image>:/<path inside>`, or null when it has none. */
  from?: string | null;
}

function answer(io: CliIo, json: boolean, a: Answer): number {
  if (json) {
    const from = a.from === undefined ? {} : { from: a.from };
    io.stdout.write(`${JSON.stringify({ compatible: a.compatible, reasons: a.reasons, ...from })}\n`);
  } else {
    const on = `${a.host.id ?? "unknown OS"} ${a.host.versionId ?? ""}`.trim();
    const head = a.compatible
      ? `compatible: systemd-sysext would merge ${a.name} on ${on} (${a.arch})`
      : a.refusedByUs === true
        ? `not compatible: kata-sysextd would not link ${a.name} on ${on} (${a.arch})`
        : `not compatible: systemd-sysext would not merge ${a.name} on ${on} (${a.arch})`;
    const from =
      a.from === undefined
        ? ""
        : a.from === null
          ? "  extension-release: none found in the image\n"
          : `  extension-release: read from the image, ${a.from}\n`;
    io.stdout.write(`${head}\n${from}${a.reasons.map((r) => `  ${r}\n`).join("")}`);
  }
  return a.compatible ? EXIT.ok : EXIT.failed;
}

const withRemedy = (err: unknown): string => {
  const message = err instanceof KataError ? err.message : String(err);
  const remedy = err instanceof KataError && err.remedy !== undefined ? ` (${err.remedy})` : "";
  return `${message}${remedy}`;
};

/** An image's format, for a regular file only: a pipe (`<(…)`) is read once, as a release file. */
async function imageFormat(path: string): Promise<"squashfs" | "erofs" | null> {
  try {
    return (await stat(path)).isFile() ? await detectFormat(path) : null;
  } catch {
    return null; // unreadable: reading it as a release file says why
  }
}

/**
 * The extension an image file is for: `<name>.raw` as systemd-sysext names it, or the sysext-bakery's
 * `<name>-<version>-<arch>.raw` (as published and quarantined) split before the first version that starts with
 * a digit (names, versions and arches all hold dashes; --name settles any other case).
 */
export function imageExtensionName(file: string): string {
  const stem = file.endsWith(".raw") ? file.slice(0, -".raw".length) : file;
  for (let at = stem.indexOf("-"); at > 0; at = stem.indexOf("-", at + 1)) {
    const split = splitImageFileName(`${stem}.raw`, stem.slice(0, at));
    if (typeof split !== "string" && /^[0-9]/.test(split.version)) return split.name;
  }
  return stem;
}

/**
 * An image judged as a pass judges it after download: its own release file as systemd-sysext 252 picks it, then
 * what kata-sysextd refuses in it. An image inspect.ts refuses (erofs, a release file systemd would not read) is
 * a "not compatible" answer with its message; an image the tools cannot read at all is exit 2.
 */
async function imageCompat(opts: {
  path: string;
  host: HostRelease;
  name: string;
  arch: string;
  json: boolean;
  io: CliIo;
}): Promise<number> {
  const { path, host, name, arch, json, io } = opts;
  let contents: ImageContents;
  try {
    contents = await inspectImage(path, name);
  } catch (err) {
    if (!(err instanceof KataError && err.code === "inspect-failed")) throw err;
    return answer(io, json, { host, name, arch, compatible: false, reasons: [withRemedy(err)], refusedByUs: true });
  }
  const releaseFile = `usr/lib/extension-release.d/${RELEASE_PREFIX}${name}`;
  const inside = contents.releaseFrom ?? releaseFile;
  const ext = contents.extensionRelease === null ? null : parseExtensionRelease(contents.extensionRelease);
  const decision = compatible(host, ext, { name, arch });
  if (ext === null && contents.otherReleaseFiles.length > 0) {
    const others = contents.otherReleaseFiles.map((f) => `/${f}`).join(", ");
    decision.reasons.push(`the image carries ${others}; if it is another extension's image, say which with --name`);
  }
  if (contents.releaseFrom !== null) {
    decision.reasons.push(`/${contents.releaseFrom} is taken instead: its user.extension-release.strict is false`);
  }
  // The missing release file is compatible()'s to say; the rest is what admission refuses (quarantine).
  const refused = payloadProblems({ ...contents, extensionRelease: contents.extensionRelease ?? "" }, name);
  const refusedByUs = decision.compatible && refused.length > 0;
  return answer(io, json, {
    host,
    name,
    arch,
    compatible: decision.compatible && refused.length === 0,
    reasons: [...decision.reasons, ...refused.map((r) => `kata-sysextd refuses the image: ${r}`)],
    refusedByUs,
    from: ext === null ? null : `${path}:/${inside}`,
  });
}
