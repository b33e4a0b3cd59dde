// Finds the configuration containerd really starts with, from systemd itself: containerd.service's effective
// ExecStart and Environment after every drop-in, the operator's included. Our own drop-in hides what it replaces,
// so the choice is recorded in it together with a fingerprint of the other unit files; only when those changed
// is our drop-in set aside for one daemon-reload to see the unit without it.
import { readFile, rm } from "node:fs/promises";
import { KataError } from "../errors.ts";
import { pathExists } from "../files.ts";
import type { Logger } from "../log/logger.ts";
import { sha256 } from "../sha256.ts";
import { writeFileAtomic } from "../store/fsutil.ts";
import type { ServiceInfo, SystemdManager } from "../systemd/manager.ts";
import { commandLine } from "./confirm.ts";
import type { ContainerdFiles, Decision } from "./registration.ts";
import { chooseBase, configOfCommandLine, recordedChoice, type UnitView } from "./unit.ts";

export const CONTAINERD_UNIT = "containerd.service";

/** The decision, or why there is nothing to register with (containerd.service is not installed). */
export type Discovery =
  | { decision: Decision; skip?: undefined; running?: RunningContainerd }
  | { skip: string; decision?: undefined };

/** The containerd process systemd runs now, and the file its command line makes it read. */
export interface RunningContainerd {
  pid: number;
  reads: string;
}

const viewOf = (info: ServiceInfo): UnitView => ({
  execStart: info.execStart.at(-1) ?? null,
  environment: info.environment,
  fragmentPath: info.fragmentPath,
  dropInPaths: info.dropInPaths,
});

/** sha256 over the unit file and every drop-in but ours, names and contents, in systemd's order. */
async function fingerprint(files: ContainerdFiles, info: ServiceInfo): Promise<string> {
  const hash = sha256();
  for (const path of [info.fragmentPath, ...info.dropInPaths.filter((p) => p !== files.unitDropInOnHost)]) {
    hash.update(`${path}\0`);
    hash.update(await readFile(files.host(path)).catch(() => Buffer.from("(unreadable)")));
    hash.update("\0");
  }
  return hash.digest("hex");
}

export async function discoverBase(
  files: ContainerdFiles,
  systemd: SystemdManager | null,
  log: Logger,
): Promise<Discovery> {
  const found = await decide(files, systemd, log);
  if (found.decision === undefined) return found;
  const { base, why } = found.decision.choice;
  // containerd without a file runs on built-in defaults we cannot merge into key by key.
  if (!(await pathExists(files.host(base)))) return { skip: `no containerd configuration at ${base} (${why})` };
  return found;
}

async function decide(files: ContainerdFiles, systemd: SystemdManager | null, log: Logger): Promise<Discovery> {
  if (systemd === null) {
    // Under --root there is no systemd to ask: [containerd] base_config, selected as Flatcar's unit does.
    return {
      decision: {
        choice: {
          base: files.fallbackBase,
          why: "no systemd to ask under --root: [containerd] base_config",
          service: [`Environment=CONTAINERD_CONFIG=${files.configOnHost}`],
        },
        unitFiles: "",
      },
    };
  }
  let info = await systemd.serviceInfo(CONTAINERD_UNIT);
  if (info.loadState !== "loaded") return { skip: `${CONTAINERD_UNIT} is ${info.loadState}` };
  const unitFiles = await fingerprint(files, info);
  if (info.dropInPaths.includes(files.unitDropInOnHost)) {
    const ours = await readFile(files.unitDropIn, "utf8").catch(() => null);
    const recorded = ours === null ? null : recordedChoice(ours);
    if (recorded !== null && recorded.unitFiles === unitFiles) return { decision: recorded };
    if (ours !== null) {
      log.info(`${CONTAINERD_UNIT}'s unit files changed since the Kata runtimes were registered; reading it anew`);
      await rm(files.unitDropIn, { force: true });
      try {
        await systemd.reload();
        info = await systemd.serviceInfo(CONTAINERD_UNIT);
      } finally {
        await writeFileAtomic(files.unitDropIn, ours);
        await systemd.reload();
      }
    }
  }
  const choice = chooseBase(viewOf(info), files.configOnHost);
  if (typeof choice === "string") {
    throw new KataError("containerd-failed", `cannot tell which configuration containerd reads: ${choice}`, {
      remedy: `check the unit with: systemctl cat ${CONTAINERD_UNIT}`,
    });
  }
  // What the unit says, checked against the process it runs now (one started before a unit change differs).
  const argv = info.mainPid > 0 ? await commandLine(files.host(`/proc/${info.mainPid}/cmdline`)) : null;
  const running = argv === null ? undefined : { pid: info.mainPid, reads: configOfCommandLine(argv) };
  return { decision: { choice, unitFiles }, running };
}
