// The configuration's shape, declared once: defaults, types and expectations come from this table, and so do
// the error messages ("key "policy.versions" must be a semver range, got "latest"").
import validRange from "semver/ranges/valid.js";
import { MAX_MANIFEST_CHARS } from "../release/manifest.ts";
import { extensionNameProblem } from "../release/names.ts";
import { hostArchitecture, SYSTEMD_ARCHITECTURES } from "../release/os-release.ts";

export type Verify = "checksum" | "signature";

/** Kata's containerd runtime type: the canary runs it as the registered "kata" handler does. */
export const KATA_RUNTIME = "io.containerd.kata.v2";
export type ActivationPolicy = "wait" | "next-boot" | "force";

export interface Constraint {
  /** Kata versions this applies to (semver range). */
  kata: string;
  /** Flatcar versions those Kata versions need (semver range). */
  flatcar: string;
  reason: string;
}

/** An extension managed together with Kata, e.g. a separate cloud-hypervisor sysext ([[companion]]). */
export interface Companion {
  name: string;
  /** The url-file source; defaults to [source] url. */
  url: string;
  verify: Verify;
  keyring: string;
  /** Acceptable versions of this companion (semver range; a leading "v" as in v53.0 is fine). */
  versions: string;
}

/** Kata releases in `kata` need `companion` versions in `versions` ([[policy.requires]]). */
export interface CompanionRequirement {
  kata: string;
  companion: string;
  versions: string;
  reason: string;
}

export interface Config {
  source: {
    url: string;
    name: string;
    verify: Verify;
    keyring: string;
    arch: string | null;
    /** A systemd-sysupdate transfer file to read url, name and verify from (config/sysupdate.ts), or null. */
    sysupdate: string | null;
    /** The source directory the transfer file's Path= names; null: `<url><name>/`. Not a TOML key. */
    path: string | null;
  };
  policy: {
    versions: string;
    keep: number;
    activation: ActivationPolicy;
    constraints: Constraint[];
    requires: CompanionRequirement[];
    /** Acceptable guest kernel versions, checked against what release metadata says a Kata release ships. */
    kernel: string | null;
    /** How long an activation may wait for Kata sandboxes before a reboot is asked for; 0: wait forever. */
    maxWaitSeconds: number;
  };
  companions: Companion[];
  api: { listen: string; enabled: boolean };
  daemon: { intervalSeconds: number; logLevel: "debug" | "info" | "notice" | "warning" | "error" };
  fetch: {
    connectTimeoutSeconds: number;
    idleTimeoutSeconds: number;
    maxBytes: number;
    /** Cap on SHA256SUMS. */
    manifestMaxBytes: number;
    retries: number;
    /** An image download slower than this over LOW_SPEED_WINDOW_MS fails (and is resumed); 0 turns it off. */
    minBytesPerSecond: number;
  };
  containerd: {
    enabled: boolean;
    restart: boolean;
    baseConfig: string;
    configFile: string;
    unitDropIn: string;
    /** The runtime handlers to register (pinned); null: every shipped one this host can run. */
    handlers: string[] | null;
    /** containerd's API socket, which the canary talks to. */
    address: string;
  };
  health: {
    /** Start a canary container after every switch; defaults to containerd.enabled (load.ts). */
    canary: boolean;
    canaryTimeoutSeconds: number;
    /** The containerd runtime the canary runs with; Kata's (the registered "kata" handler) by default. */
    canaryRuntime: string;
  };
  cluster: {
    /** The file a reboot coordinator (kured) watches; written when an activation needs a reboot. "" turns it off. */
    rebootSentinel: string;
    /** Where Node Feature Discovery reads this node's Kata readiness; "" turns it off. */
    nfdFeaturesFile: string;
  };
}

/** One leaf of the schema: its TOML key, how to check it, and what the message should say is expected. */
export interface Leaf {
  toml: string;
  expected: string;
  check: (value: unknown) => boolean;
  /** What exactly is wrong with a value that fails `check`, when there is more to say than `expected`. */
  why?: (value: unknown) => string | null;
}

const isString = (v: unknown): v is string => typeof v === "string";
const nonEmpty = (v: unknown): boolean => isString(v) && v.length > 0;
const oneOf =
  (...values: string[]) =>
  (v: unknown): boolean =>
    isString(v) && values.includes(v);
const intIn =
  (min: number, max: number) =>
  (v: unknown): boolean =>
    (typeof v === "number" || typeof v === "bigint") &&
    Number.isInteger(Number(v)) &&
    Number(v) >= min &&
    Number(v) <= max;
const isBool = (v: unknown): boolean => typeof v === "boolean";
const isRange = (v: unknown): boolean => isString(v) && v.trim() !== "" && validRange(v) !== null;
const parsedUrl = (v: unknown): URL | null => {
  if (!isString(v)) return null;
  try {
    return new URL(v);
  } catch {
    return null;
  }
};
// No user or password in it: kata-sysextd sends no credentials, and a URL is shown in /status and the journal.
const isHttpUrl = (v: unknown): boolean => {
  const u = parsedUrl(v);
  return (
    u !== null &&
    (u.protocol === "http:" || u.protocol === "https:") &&
    String(v).endsWith("/") &&
    u.username === "" &&
    u.password === "" &&
    u.search === "" &&
    u.hash === ""
  );
};
const urlProblem = (v: unknown): string | null => {
  const u = parsedUrl(v);
  if (u !== null && (u.username !== "" || u.password !== "")) {
    return 'it carries a user or password: kata-sysextd sends no credentials and refuses to keep them where /status and the journal show the URL; publish the release where it can be read without them (the images are verified by SHA256SUMS and, with verify = "signature", its signature)';
  }
  // Every file's URL is resolved against this one, which drops a query and a fragment: a token there is never sent.
  if (u !== null && (u.search !== "" || u.hash !== "")) {
    return `it has a ${u.search !== "" ? "query" : "fragment"}, which no file's URL would keep (they are resolved against <url><name>/); give the directory's plain URL`;
  }
  return null;
};
// The rule `kata-sysextctl compat --name` and the image store use, so a name that loads makes safe file names.
const isName = (v: unknown): boolean => isString(v) && extensionNameProblem(v) === null;
const nameProblem = (v: unknown): string | null => {
  const problem = isString(v) ? extensionNameProblem(v) : null;
  return problem === null ? null : `it ${problem}`;
};
const isArch = (v: unknown): boolean => isString(v) && SYSTEMD_ARCHITECTURES.includes(v);
/** A uname or Debian name ("x86_64", "amd64") where systemd's is expected: say which one was meant. */
const archProblem = (v: unknown): string | null => {
  if (!isString(v)) return null;
  const meant = hostArchitecture(v, "");
  return SYSTEMD_ARCHITECTURES.includes(meant) ? `systemd calls it "${meant}"` : null;
};
export const isLoopbackListen = (v: unknown): boolean =>
  isString(v) && /^(127\.0\.0\.1|\[::1\]|localhost):([0-9]{1,5})$/.test(v) && Number(v.split(":").pop()) <= 65535;
const isAbsPath = (v: unknown): boolean => isString(v) && v.startsWith("/");
const isAbsPathOrOff = (v: unknown): boolean => v === "" || (isAbsPath(v) && !String(v).endsWith("/"));

export const SECTIONS: Record<string, Record<string, Leaf>> = {
  source: {
    url: { toml: "url", expected: "an http(s) URL ending in /", check: isHttpUrl, why: urlProblem },
    name: { toml: "name", expected: "an extension name like kata-containers", check: isName, why: nameProblem },
    verify: { toml: "verify", expected: '"checksum" or "signature"', check: oneOf("checksum", "signature") },
    keyring: { toml: "keyring", expected: "an absolute path to an ASCII-armored keyring", check: isAbsPath },
    arch: {
      toml: "arch",
      expected: "a systemd architecture name like x86-64 or arm64",
      check: isArch,
      why: archProblem,
    },
    sysupdate: {
      toml: "sysupdate",
      expected: "an absolute path to a systemd-sysupdate transfer file",
      check: isAbsPath,
    },
  },
  policy: {
    versions: { toml: "versions", expected: 'a semver range like ">=3.21.0"', check: isRange },
    keep: { toml: "keep", expected: "an integer from 1 to 100", check: intIn(1, 100) },
    kernel: { toml: "kernel", expected: 'a semver range of guest kernel versions like "6.12.x"', check: isRange },
    activation: {
      toml: "activation",
      expected: '"wait", "next-boot" or "force"',
      check: oneOf("wait", "next-boot", "force"),
    },
    maxWaitSeconds: {
      toml: "max_wait_seconds",
      expected: "an integer from 0 (wait forever) to 31536000 (a year)",
      check: intIn(0, 31_536_000),
    },
  },
  api: {
    listen: { toml: "listen", expected: 'a loopback address like "127.0.0.1:8720"', check: isLoopbackListen },
    enabled: { toml: "enabled", expected: "true or false", check: isBool },
  },
  daemon: {
    intervalSeconds: { toml: "interval_seconds", expected: "an integer from 60 to 604800", check: intIn(60, 604_800) },
    logLevel: {
      toml: "log_level",
      expected: '"debug", "info", "notice", "warning" or "error"',
      check: oneOf("debug", "info", "notice", "warning", "error"),
    },
  },
  fetch: {
    connectTimeoutSeconds: {
      toml: "connect_timeout_seconds",
      expected: "an integer from 1 to 600",
      check: intIn(1, 600),
    },
    idleTimeoutSeconds: { toml: "idle_timeout_seconds", expected: "an integer from 1 to 600", check: intIn(1, 600) },
    maxBytes: { toml: "max_bytes", expected: "an integer from 1 to 2^40", check: intIn(1, 2 ** 40) },
    manifestMaxBytes: {
      toml: "manifest_max_bytes",
      expected: `an integer from 4096 to ${MAX_MANIFEST_CHARS} (16 MiB)`,
      check: intIn(4096, MAX_MANIFEST_CHARS),
    },
    retries: { toml: "retries", expected: "an integer from 0 to 20", check: intIn(0, 20) },
    minBytesPerSecond: {
      toml: "min_bytes_per_second",
      expected: "an integer from 0 (no minimum) to 2^30",
      check: intIn(0, 2 ** 30),
    },
  },
  containerd: {
    enabled: { toml: "enabled", expected: "true or false", check: isBool },
    restart: { toml: "restart", expected: "true or false", check: isBool },
    baseConfig: { toml: "base_config", expected: "an absolute path", check: isAbsPath },
    configFile: { toml: "config_file", expected: "an absolute path", check: isAbsPath },
    unitDropIn: {
      toml: "unit_drop_in",
      expected: "an absolute path ending in .conf",
      check: (v) => isAbsPath(v) && String(v).endsWith(".conf"),
    },
    handlers: {
      toml: "handlers",
      expected: 'a list of runtime handler names like ["kata", "kata-qemu"]',
      check: (v) => Array.isArray(v) && v.every((h) => typeof h === "string" && /^kata(-[a-z0-9]+)*$/.test(h)),
    },
    address: { toml: "address", expected: "an absolute path to containerd's socket", check: isAbsPath },
  },
  health: {
    canary: { toml: "canary", expected: "true or false", check: isBool },
    canaryTimeoutSeconds: {
      toml: "canary_timeout_seconds",
      expected: "an integer from 1 to 3600",
      check: intIn(1, 3600),
    },
    canaryRuntime: {
      toml: "canary_runtime",
      expected: 'a containerd runtime type like "io.containerd.kata.v2"',
      check: (v) => isString(v) && /^[a-z0-9]+(\.[a-z0-9_-]+)+$/i.test(v),
    },
  },
  cluster: {
    rebootSentinel: {
      toml: "reboot_sentinel",
      expected: 'an absolute file path like "/run/reboot-required", or "" to turn it off',
      check: isAbsPathOrOff,
    },
    nfdFeaturesFile: {
      toml: "nfd_features_file",
      expected: 'an absolute file path, or "" to turn the feature file off',
      check: isAbsPathOrOff,
    },
  },
};

export const COMPANION_KEYS: Record<keyof Companion, Leaf> = {
  name: { toml: "name", expected: "an extension name like cloud-hypervisor", check: isName, why: nameProblem },
  url: { toml: "url", expected: "an http(s) URL ending in /", check: isHttpUrl, why: urlProblem },
  verify: { toml: "verify", expected: '"checksum" or "signature"', check: oneOf("checksum", "signature") },
  keyring: { toml: "keyring", expected: "an absolute path to an ASCII-armored keyring", check: isAbsPath },
  versions: { toml: "versions", expected: 'a semver range like ">=51.0"', check: isRange },
};

export const REQUIREMENT_KEYS: Record<keyof CompanionRequirement, Leaf> = {
  kata: { toml: "kata", expected: "a semver range of Kata versions", check: isRange },
  companion: { toml: "companion", expected: "the name of a [[companion]]", check: isName, why: nameProblem },
  versions: { toml: "versions", expected: "a semver range of the companion's versions", check: isRange },
  reason: { toml: "reason", expected: "a non-empty string", check: nonEmpty },
};

export const CONSTRAINT_KEYS: Record<keyof Constraint, Leaf> = {
  kata: { toml: "kata", expected: "a semver range of Kata versions", check: isRange },
  flatcar: { toml: "flatcar", expected: "a semver range of Flatcar versions", check: isRange },
  reason: { toml: "reason", expected: "a non-empty string", check: nonEmpty },
};

export const DEFAULTS: Config = {
  source: {
    url: "https://extensions.flatcar.org/extensions/",
    name: "kata-containers",
    verify: "checksum",
    keyring: "/etc/kata-sysextd/trusted.asc",
    arch: null,
    sysupdate: null,
    path: null,
  },
  policy: {
    versions: ">=3.21.0",
    keep: 3,
    activation: "wait",
    constraints: [],
    requires: [],
    kernel: null,
    maxWaitSeconds: 86_400,
  },
  companions: [],
  api: { listen: "127.0.0.1:8720", enabled: true },
  daemon: { intervalSeconds: 21_600, logLevel: "info" },
  fetch: {
    connectTimeoutSeconds: 15,
    idleTimeoutSeconds: 30,
    maxBytes: 2 * 1024 ** 3,
    manifestMaxBytes: 1024 * 1024,
    retries: 4,
    minBytesPerSecond: 1024,
  },
  containerd: {
    enabled: true,
    restart: true,
    baseConfig: "/usr/share/containerd/config.toml",
    configFile: "/etc/kata-sysextd/containerd.toml",
    unitDropIn: "/etc/systemd/system/containerd.service.d/50-kata-sysextd.conf",
    handlers: null,
    address: "/run/containerd/containerd.sock",
  },
  health: { canary: true, canaryTimeoutSeconds: 60, canaryRuntime: KATA_RUNTIME },
  cluster: {
    rebootSentinel: "/run/reboot-required",
    nfdFeaturesFile: "/etc/kubernetes/node-feature-discovery/features.d/kata-sysextd",
  },
};
