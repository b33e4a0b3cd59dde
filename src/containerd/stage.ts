// containerd registration as an activation stage: find the configuration containerd.service really uses, write
// the merged file and the drop-in, restart containerd over D-Bus, and confirm the running process loaded the
// handlers. A registration containerd did not load is put back at once, with the reason (undo: restart again on
// the previous registration).

import { readFile } from "node:fs/promises";
import type { Logger } from "../log/logger.ts";
import type { Stage } from "../stages.ts";
import type { StoredImage } from "../store/store.ts";
import type { SystemdManager } from "../systemd/manager.ts";
import { confirmLoaded } from "./confirm.ts";
import { CONTAINERD_UNIT, type Discovery, discoverBase } from "./discover.ts";
import { handlerFacts, hostFacts } from "./facts.ts";
import { type RuntimeHandler, runtimeHandlers } from "./handlers.ts";
import {
  type ContainerdFiles,
  type Decision,
  register,
  restore,
  type Snapshot,
  snapshot,
  unregister,
} from "./registration.ts";
import { devmapperIn } from "./schema.ts";
import { type HandlerVerdict, selectHandlers } from "./selection.ts";

export { CONTAINERD_UNIT };

export interface RuntimeRegistration {
  /** The stage that registers `image`'s runtime handlers; its undo restores the previous registration. */
  stage(image: StoredImage): Stage;
  /** Removes the registration before the shim goes away, restarting containerd if it runs. */
  unregister(): Promise<void>;
  /**
   * Makes the registration match the active image (null: none is active), restarting containerd only when that
   * changed something. A pass ends with it: a switch the daemon died inside, an edit of the base configuration or
   * of containerd.service, or an /etc/kata-containers/configuration.toml added or removed leaves containerd with
   * handlers or configuration paths the host no longer has. Returns whether it changed anything.
   */
  ensure(image: StoredImage | null): Promise<boolean>;
  /** What the last registration decided, for /status; null before the first one. */
  status(): ContainerdStatus | null;
}

export interface ContainerdStatus {
  /** The configuration the runtimes were merged into, and why that one. */
  base: string | null;
  why: string | null;
  /** Every shipped (or pinned) handler: registered, or the reason it is not. */
  handlers: HandlerVerdict[];
}

export interface RegistrationDeps {
  files: ContainerdFiles;
  /** The host root (--root): devices, /sys and the Kata payload are judged under it. */
  root: string;
  /** [containerd] handlers: the operator's pinned list, or null for every handler this host can run. */
  pinned: string[] | null;
  /** Resolves host paths under --root: where the operator's Kata configuration is looked for. */
  host: (path: string) => string;
  /** Absent where there is no systemd to talk to (--root): files are written, containerd is not restarted. */
  systemd: SystemdManager | null;
  restart: boolean;
  log: Logger;
}

export function containerdRegistration(deps: RegistrationDeps): RuntimeRegistration {
  const { files, log } = deps;
  /**
   * daemon-reload for the unit drop-in, then restart containerd if it was running and, given the handlers it must
   * now have, confirm it loaded them; confirmed, not assumed.
   */
  const apply = async (expect: readonly RuntimeHandler[] | null): Promise<void> => {
    const systemd = deps.systemd;
    if (systemd === null) return;
    await systemd.reload();
    if (!deps.restart) return;
    const state = await systemd.unitState(CONTAINERD_UNIT);
    if (state.activeState !== "active") {
      log.info(`containerd is ${state.activeState}; it picks up the Kata runtimes when it starts`);
      return;
    }
    await systemd.restartUnit(CONTAINERD_UNIT);
    await systemd.confirmActive(CONTAINERD_UNIT);
    if (expect === null) return;
    await confirmLoaded(
      await systemd.serviceInfo(CONTAINERD_UNIT),
      files.configOnHost,
      files.unitDropInOnHost,
      expect.map((h) => h.name),
      deps.host,
    );
    log.info(
      expect.length > 0
        ? `containerd restarted and loaded the Kata runtime handlers ${expect.map((h) => h.name).join(", ")}`
        : "containerd restarted with no Kata runtime handler: none can run on this host (/status containerd.handlers says why)",
    );
  };

  /** Which configuration to build on; said in the journal when it differs from what was said last. */
  let said = "";
  const discover = async (): Promise<Discovery> => {
    const found = await discoverBase(files, deps.systemd, log);
    if (found.skip !== undefined) {
      if (found.skip !== said)
        log.warning(`${found.skip}: the Kata runtime handlers are not registered with containerd`);
      said = found.skip;
      return found;
    }
    const { base, why } = found.decision.choice;
    const running = found.running;
    const process =
      running === undefined
        ? "containerd is not running"
        : running.reads === base || running.reads === files.configOnHost
          ? `the running containerd (pid ${running.pid}) reads ${running.reads}`
          : `the running containerd (pid ${running.pid}) still reads ${running.reads}, from before a change to its unit`;
    const now = `${base}: ${why}; ${process.replace(/\(pid \d+\) /, "")}`;
    if (now !== said)
      log.info(`containerd's Kata runtimes are merged into ${base}: ${why}; ${process}`, { CONTAINERD_BASE: base });
    said = now;
    return found;
  };

  let last: ContainerdStatus | null = null;

  /** The handlers this host can run (selection.ts), each verdict logged once when it changes. */
  const select = async (image: StoredImage, decision: Decision): Promise<RuntimeHandler[]> => {
    const devmapper = devmapperIn(await readFile(files.host(decision.choice.base), "utf8").catch(() => ""));
    const trees = { hostRoot: deps.root, payloadRoot: deps.root };
    const facts = await handlerFacts(await runtimeHandlers(image.kataConfigs, deps.host), trees);
    const verdicts = selectHandlers(facts, await hostFacts(deps.host, devmapper), deps.pinned);
    const said = new Map((last?.handlers ?? []).map((v) => [v.name, v.reason]));
    for (const v of verdicts) {
      if (v.registered || said.get(v.name) === v.reason) continue;
      const say = v.pinned ? log.warning : log.info;
      say(`runtime handler ${v.name} is not registered: ${v.reason}`, { KATA_HANDLER: v.name });
    }
    last = { base: decision.choice.base, why: decision.choice.why, handlers: verdicts };
    return verdicts
      .filter((v) => v.registered && v.configPath !== null)
      .map((v) => ({
        name: v.name,
        configPath: v.configPath ?? "",
        ...(v.snapshotter ? { snapshotter: v.snapshotter } : {}),
      }));
  };

  /** Registers, restarts and confirms; what containerd did not load is put back before the error goes up. */
  const registerConfirmed = async (image: StoredImage, found: Discovery): Promise<boolean> => {
    if (found.decision === undefined) return false;
    const handlers = await select(image, found.decision);
    const before: Snapshot = await snapshot(files);
    if (!(await register(files, handlers, found.decision))) return false;
    try {
      await apply(handlers);
    } catch (err) {
      await restore(files, before);
      await apply(null).catch((again: unknown) =>
        log.error(`containerd did not come back on the previous configuration: ${String(again)}`),
      );
      throw err;
    }
    return true;
  };

  return {
    stage(image) {
      let before: Snapshot | null = null;
      let changed = false;
      return {
        name: "containerd",
        run: async () => {
          before = await snapshot(files);
          changed = await registerConfirmed(image, await discover());
        },
        undo: async () => {
          if (!changed || before === null) return;
          await restore(files, before);
          await apply(null);
        },
      };
    },
    async unregister() {
      if (await unregister(files)) await apply(null);
    },
    status: () => last,
    async ensure(image) {
      if (image === null) {
        last = null;
        const changed = await unregister(files);
        if (changed) await apply(null);
        return changed;
      }
      return registerConfirmed(image, await discover());
    },
  };
}
