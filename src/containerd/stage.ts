// containerd registration as an activation stage: write it (undo: put back what was there), then restart
// containerd over D-Bus and confirm it came back (undo: restart it again on the old configuration).

import type { Stage } from "../controller/transaction.ts";
import { pathExists } from "../files.ts";
import type { Logger } from "../log/logger.ts";
import type { StoredImage } from "../store/store.ts";
import type { SystemdManager } from "../systemd/manager.ts";
import { runtimeHandlers } from "./handlers.ts";
import { type ContainerdFiles, register, restore, type Snapshot, snapshot, unregister } from "./registration.ts";

export const CONTAINERD_UNIT = "containerd.service";

export interface RuntimeRegistration {
  /** The stage that registers `image`'s runtime handlers; its undo restores the previous registration. */
  stage(image: StoredImage): Stage;
  /** Removes the registration before the shim goes away, restarting containerd if it runs. */
  unregister(): Promise<void>;
  /**
   * Makes the registration match the active image (null: none is active), restarting containerd only when that
   * changed something. A pass ends with it: a switch the daemon died inside, an edit of the base configuration, or
   * an /etc/kata-containers/configuration.toml added or removed leaves containerd with handlers or configuration
   * paths the host no longer has. Returns whether it changed anything.
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
  /** daemon-reload for the unit drop-in, then restart containerd if it was running; confirmed, not assumed. */
  const apply = async (): Promise<void> => {
    const systemd = deps.systemd;
    if (systemd === null) return;
    await systemd.reload();
    if (!deps.restart) return;
    const state = await systemd.unitState(CONTAINERD_UNIT);
    if (state.activeState !== "active") {
      deps.log.info(`containerd is ${state.activeState}; it picks up the Kata runtimes when it starts`);
      return;
    }
    await systemd.restartUnit(CONTAINERD_UNIT);
    await systemd.confirmActive(CONTAINERD_UNIT);
    deps.log.info("containerd restarted with the Kata runtime handlers");
  };

  return {
    stage(image) {
      let before: Snapshot | null = null;
      let changed = false;
      return {
        name: "containerd",
        run: async () => {
          if (!(await pathExists(deps.files.base))) {
            deps.log.warning(
              `no containerd configuration at ${deps.files.base}; the Kata runtime handlers are not registered`,
            );
            return;
          }
          before = await snapshot(deps.files);
          changed = await register(deps.files, await runtimeHandlers(image.kataConfigs, deps.host));
          if (changed) await apply();
        },
        undo: async () => {
          if (!changed || before === null) return;
          await restore(deps.files, before);
          await apply();
        },
      };
    },
    async unregister() {
      if (await unregister(deps.files)) await apply();
    },
    async ensure(image) {
      // Without a base configuration there is nothing to merge into; the stage above says so at each switch.
      if (image !== null && !(await pathExists(deps.files.base))) return false;
      const changed =
        image === null
          ? await unregister(deps.files)
          : await register(deps.files, await runtimeHandlers(image.kataConfigs, deps.host));
      if (changed) await apply();
      return changed;
    },
  };
}
