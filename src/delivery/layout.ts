// Where the daemon's own system extension puts things, shared by the build (scripts/build-sysext.ts), the
// provisioning config (config/butane.yaml) and the tests. Everything lives under /usr: a sysext that ships /opt
// makes /opt read-only on Flatcar.

/** The extension's name: the image installs as /etc/extensions/kata-sysextd.raw. */
export const SYSEXT_NAME = "kata-sysextd";

/** Runtime, bundles, native addon and helpers, all beside each other so the bundle finds them relative to itself. */
export const LIB_DIR = "usr/lib/kata-sysextd";

export const PATHS = {
  node: `${LIB_DIR}/node`,
  daemonBundle: `${LIB_DIR}/kata-sysextd.mjs`,
  ctlBundle: `${LIB_DIR}/kata-sysextctl.mjs`,
  /** createRequire(bundle) resolves "systemd-journald/log.js" here, as it does in the checkout's node_modules. */
  journaldAddon: `${LIB_DIR}/node_modules/systemd-journald`,
  helpers: `${LIB_DIR}/helpers`,
  /** The canary's OCI image layout tarball (scripts/build-canary.ts); src/canary/canary.ts finds it via the wrappers. */
  canaryImage: `${LIB_DIR}/canary.oci.tar`,
  daemonWrapper: "usr/bin/kata-sysextd",
  ctlWrapper: "usr/bin/kata-sysextctl",
  units: "usr/lib/systemd/system",
  catalog: "usr/lib/systemd/catalog/kata-sysextd.catalog",
  configDefaults: "usr/share/kata-sysextd/config.toml",
  doc: "usr/share/doc/kata-sysextd/README.md",
  /** docs/*.md beside the README, so its links (docs/operations.md, …) resolve on the node too. */
  docs: "usr/share/doc/kata-sysextd/docs",
  extensionRelease: `usr/lib/extension-release.d/extension-release.${SYSEXT_NAME}`,
} as const;

/** `kata-sysextd-0.1.0-x86-64.raw`, the sysupdate-style name the SHA256SUMS line carries. */
export function imageFileName(version: string, arch = "x86-64"): string {
  return `${SYSEXT_NAME}-${version}-${arch}.raw`;
}

/**
 * The extension-release. ID=flatcar with SYSEXT_LEVEL=1.0, not ID=_any: the image brings its own Node but links
 * against the host's glibc, libstdc++ and libsystemd, and the build checks those needs against Flatcar's oldest
 * supported release only. Flatcar has kept SYSEXT_LEVEL=1.0 across releases, so this merges on every Flatcar
 * and refuses hosts whose libraries were never checked. EXTENSION_RELOAD_MANAGER=1 asks systemd-sysext (255 and
 * later) to reload the manager after merging, so the units it brings are loaded.
 */
export function extensionReleaseText(arch = "x86-64"): string {
  return `ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE=${arch}\nEXTENSION_RELOAD_MANAGER=1\n`;
}
