// Would systemd-sysext merge this extension on this host? The rules of systemd's extension_release_validate(),
// in its order, with every answer naming the field that decided it.
//
// systemd 252 (Debian 12, the differential test's oracle) and newer systemd differ in two places:
// - ID_LIKE: since systemd 258 an extension ID may also equal a word of the host's ID_LIKE. 252 requires ID to
//   equal the host ID. We follow 252 by default: it is the stricter rule, so "compatible" is true on every
//   systemd version; `matchIdLike: true` opts into the newer rule.
// - Comments ending in a backslash: see envfile.ts (we follow systemd >= 254).
import type { ExtensionRelease, HostRelease } from "./os-release.ts";
import { extensionReleasePath } from "./os-release.ts";

export type Scope = "system" | "initrd" | "portable";

export interface CompatOptions {
  /** The image name: the file name without ".raw", or the directory name (kata-containers). */
  name: string;
  /** The host architecture in systemd's naming (hostArchitecture()). */
  arch: string;
  /** Defaults to "system", as systemd-sysext uses outside the initrd. */
  scope?: Scope;
  /** Also accept an extension ID listed in the host's ID_LIKE (systemd >= 258). Default false (systemd 252). */
  matchIdLike?: boolean;
}

export interface CompatDecision {
  compatible: boolean;
  /** Why; each reason names the field that decided. Never empty. */
  reasons: string[];
  /**
   * Not compatible only because of VERSION_ID or SYSEXT_LEVEL: the image is for another release of this OS and
   * may merge after an update (or did before one). Every other mismatch holds on any release of this host.
   */
  releaseBound?: boolean;
}

const DEFAULT_SCOPE = ["system", "portable"];
const empty = (v: string | null): boolean => v === null || v === "";
const show = (v: string | null): string => (v === null ? "unset" : JSON.stringify(v));

export function compatible(host: HostRelease, ext: ExtensionRelease | null, opts: CompatOptions): CompatDecision {
  const yes = (reason: string): CompatDecision => ({ compatible: true, reasons: [reason] });
  const no = (reason: string): CompatDecision => ({ compatible: false, reasons: [reason] });
  const otherRelease = (reason: string): CompatDecision => ({
    compatible: false,
    reasons: [reason],
    releaseBound: true,
  });
  const { name, arch } = opts;
  const scope = opts.scope ?? "system";

  // systemd-sysext stops before looking at any extension when the host has no ID.
  if (empty(host.id)) return no("host os-release: ID is missing or empty; systemd-sysext merges nothing");
  const hostId = host.id ?? "";
  if (ext === null) return no(`extension-release: /${extensionReleasePath(name)} is missing in the image`);
  if (Object.keys(ext.values).length === 0) return no("extension-release: the file has no assignments");

  const scopes = ext.scope ?? DEFAULT_SCOPE;
  if (!scopes.includes(scope)) {
    const declared = ext.scope === null ? "unset" : JSON.stringify(ext.scope.join(" "));
    return no(`SYSEXT_SCOPE: ${declared} does not include "${scope}"`);
  }

  if (!empty(ext.architecture) && ext.architecture !== "_any" && ext.architecture !== arch) {
    return no(`ARCHITECTURE: extension is for ${show(ext.architecture)}, host is "${arch}"`);
  }

  if (empty(ext.id)) return no(`ID: missing or empty in extension-release; must be "${hostId}" or "_any"`);
  if (ext.id === "_any") return yes('ID: "_any" matches every host; VERSION_ID and SYSEXT_LEVEL are not checked');

  const likeMatch = host.idLike.includes(ext.id ?? "");
  if (ext.id !== hostId && !(opts.matchIdLike === true && likeMatch)) {
    const hint = likeMatch ? ` (host ID_LIKE lists it, which only systemd >= 258 accepts)` : "";
    return no(`ID: extension is for ${show(ext.id)}, host is "${hostId}"${hint}`);
  }
  const idWord = ext.id === hostId ? `ID "${hostId}" matches` : `ID ${show(ext.id)} matches host ID_LIKE`;

  if (empty(host.versionId) && empty(host.sysextLevel)) {
    return yes(`${idWord}; host has neither VERSION_ID nor SYSEXT_LEVEL, so nothing else is compared`);
  }
  if (!empty(host.sysextLevel) && !empty(ext.sysextLevel)) {
    if (host.sysextLevel !== ext.sysextLevel) {
      return otherRelease(`SYSEXT_LEVEL: extension has ${show(ext.sysextLevel)}, host has ${show(host.sysextLevel)}`);
    }
    return yes(`${idWord}; SYSEXT_LEVEL ${show(ext.sysextLevel)} matches`);
  }
  if (!empty(host.versionId)) {
    const why = empty(host.sysextLevel) ? "host has no SYSEXT_LEVEL" : "extension has no SYSEXT_LEVEL";
    if (empty(ext.versionId)) {
      return no(`VERSION_ID: missing in extension-release (${why}), host has ${show(host.versionId)}`);
    }
    if (ext.versionId !== host.versionId) {
      return otherRelease(
        `VERSION_ID: extension has ${show(ext.versionId)}, host has ${show(host.versionId)} (${why})`,
      );
    }
    return yes(`${idWord}; VERSION_ID ${show(ext.versionId)} matches (${why})`);
  }
  // Host has SYSEXT_LEVEL but no VERSION_ID, and the extension declares no level: systemd accepts.
  return yes(`${idWord}; extension has no SYSEXT_LEVEL and host has no VERSION_ID, so nothing else is compared`);
}
