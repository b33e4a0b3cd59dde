// containerd registration as an activation stage: find the configuration containerd.service really uses, write
// the merged file and the drop-in, restart containerd over D-Bus, and confirm the running process loaded the
// handlers. A registration containerd did not load is put back at once, with the reason (undo: restart again on
// the previous registration).
import type { Stage } from "../controller/transaction.ts";
import type { Logger } from "../log/logger.ts";
import type { StoredImage } from "../store/store.ts";
import type { SystemdManager } from "../systemd/manager.ts";
import { confirmLoaded } from "./confirm.ts";
import { CONTAINERD_UNIT, type Discovery, discoverBase } from "./discover.ts";
import { type RuntimeHandler, runtimeHandlers } from "./handlers.ts";
import { type ContainerdFiles, register, restore, type Snapshot, snapshot, unregister } from "./registration.ts";

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
}

export interface RegistrationDeps {
  files: ContainerdFiles;
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
    log.info(`containerd restarted and loaded the Kata runtime handlers ${expect.map((h) => h.name).join(", ")}`);
  };

  /** Which configuration to build on; said in the journal each time it is decided. */
  const discover = async (): Promise<Discovery> => {
    const found = await discoverBase(files, deps.systemd, log);
    if (found.skip !== undefined) {
      log.warning(`${found.skip}: the Kata runtime handlers are not registered with containerd`);
    } else {
      const { base, why } = found.decision.choice;
      log.info(`containerd's Kata runtimes are merged into ${base}: ${why}`, { CONTAINERD_BASE: base });
    }
    return found;
  };

  /** Registers, restarts and confirms; what containerd did not load is put back before the error goes up. */
  const registerConfirmed = async (image: StoredImage, found: Discovery): Promise<boolean> => {
    if (found.decision === undefined) return false;
    const handlers = await runtimeHandlers(image.kataConfigs, deps.host);
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
    async ensure(image) {
      if (image === null) {
        const changed = await unregister(files);
        if (changed) await apply(null);
        return changed;
      }
      return registerConfirmed(image, await discover());
    },
  };
}
