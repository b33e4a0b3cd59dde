// Image file names as the sysext-bakery publishes them: <name>-<version>-<arch>.raw. Names and versions may
// contain dashes (kata-containers, 3.2.0-rc0) and so may architectures (x86-64), so a file name is only
// split against a known extension name and known architecture names, never by counting dashes.
import { fail, KataError, ok, type Result } from "../errors.ts";
import { SYSTEMD_ARCHITECTURES } from "./os-release.ts";

export interface ImageName {
  name: string;
  version: string;
  arch: string;
}

const FILE_NAME_CHARS = /^[A-Za-z0-9._+~^-]+$/;
const MAX_FILE_NAME = 255;

/** Why `file` is not a safe file name to put under a directory, or null when it is one. */
export function fileNameProblem(file: string): string | null {
  if (file.length === 0) return "is empty";
  if (file.length > MAX_FILE_NAME) return `is longer than ${MAX_FILE_NAME} characters`;
  if (file.includes("/") || file.includes("\\")) return "contains a path separator";
  if (file.includes("..")) return 'contains ".."';
  if (file === ".") return 'is "."';
  if (!FILE_NAME_CHARS.test(file)) return "contains characters outside [A-Za-z0-9._+~^-]";
  if (file.startsWith(".")) return 'starts with "." (hidden files are ignored by systemd-sysext)';
  if (file.startsWith("-")) return 'starts with "-" (would read as an option)';
  return null;
}

export function validateFileName(file: string): Result<string> {
  const problem = fileNameProblem(file);
  return problem === null ? ok(file) : fail(nameInvalid(`file name ${quote(file)} ${problem}`));
}

/** Why `name` is not an extension name (see validateExtensionName), or null when it is one. */
export function extensionNameProblem(name: string): string | null {
  return fileNameProblem(name) ?? (name.endsWith(".raw") ? 'must not end in ".raw"' : null);
}

/** An extension name (kata-containers): a safe file name that also works as a systemd image name. */
export function validateExtensionName(name: string): Result<string> {
  const problem = extensionNameProblem(name);
  return problem === null ? ok(name) : fail(nameInvalid(`extension name ${quote(name)} ${problem}`));
}

/**
 * Splits `<name>-<version>-<arch>.raw` for a known extension name. With `arch` the file must be for that
 * architecture; without it the file must end in a known systemd architecture (the longer one when both
 * "-64" style and "-x86-64" style suffixes could match).
 */
export function parseImageFileName(file: string, name: string, arch?: string): Result<ImageName> {
  const split = splitImageFileName(file, name, arch);
  return typeof split === "string" ? fail(nameInvalid(split)) : ok(split);
}

const KNOWN_ARCHES = new Set(SYSTEMD_ARCHITECTURES);

/** parseImageFileName without the error objects, for hot loops over large manifests: a problem is a string. */
export function splitImageFileName(file: string, name: string, arch?: string): ImageName | string {
  const problem = fileNameProblem(file);
  if (problem !== null) return `file name ${quote(file)} ${problem}`;
  const prefix = `${name}-`;
  if (!file.startsWith(prefix)) return `${quote(file)} is not an image of ${quote(name)}`;
  if (!file.endsWith(".raw")) return `${quote(file)} does not end in ".raw"`;
  const middle = file.slice(prefix.length, -".raw".length);
  // Architecture names have at most one dash, so only the last two dash-separated parts can be one.
  const last = middle.lastIndexOf("-");
  const secondLast = last > 0 ? middle.lastIndexOf("-", last - 1) : -1;
  let found: string | undefined;
  for (const at of [secondLast, last]) {
    if (at < 0 || found !== undefined) continue;
    const candidate = middle.slice(at + 1);
    if (arch === undefined ? KNOWN_ARCHES.has(candidate) : candidate === arch) found = candidate;
  }
  if (found === undefined) {
    const expected = arch === undefined ? "a systemd architecture" : quote(arch);
    return `${quote(file)} does not end in -<arch>.raw with ${expected}`;
  }
  const version = middle.slice(0, -(found.length + 1));
  if (version.length === 0) return `${quote(file)} has no version between name and architecture`;
  if (!/^[A-Za-z0-9]/.test(version))
    return `${quote(file)}: version ${quote(version)} must start with a letter or digit`;
  return { name, version, arch: found };
}

export function formatImageFileName(image: ImageName): Result<string> {
  const name = validateExtensionName(image.name);
  if (!name.ok) return name;
  const file = `${image.name}-${image.version}-${image.arch}.raw`;
  const parsed = parseImageFileName(file, image.name, image.arch);
  if (!parsed.ok) return parsed;
  if (parsed.value.version !== image.version) {
    return fail(nameInvalid(`version ${quote(image.version)} does not survive the round trip through ${file}`));
  }
  return ok(file);
}

const quote = (s: string): string => JSON.stringify(s.length > 80 ? `${s.slice(0, 77)}...` : s);

function nameInvalid(message: string): KataError {
  return new KataError("name-invalid", message, {
    remedy: "publish images as <name>-<version>-<arch>.raw using only [A-Za-z0-9._+~^-]",
  });
}
