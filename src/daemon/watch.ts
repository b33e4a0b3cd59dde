// File watches (chokidar): the configuration (hot reload), the active link and the extension directories
// (someone changed them behind our back), and /run/reboot-required. Each change becomes one callback; the
// daemon decides what it means.
import { watch } from "chokidar";
import type { Logger } from "../log/logger.ts";

export interface WatchTargets {
  configFile: string;
  extensionsDir: string;
  rebootRequired: string;
}

export interface WatchHandlers {
  configChanged(): void;
  extensionsChanged(path: string): void;
  rebootRequired(): void;
}

export function watchFiles(targets: WatchTargets, handlers: WatchHandlers, log: Logger): () => Promise<void> {
  const watcher = watch([targets.configFile, targets.extensionsDir, targets.rebootRequired], {
    ignoreInitial: true,
    depth: 0,
    // Atomic replaces (rename over) are what editors and we do; wait until the write settles.
    awaitWriteFinish: { stabilityThreshold: 200, pollInterval: 50 },
  });
  const route = (path: string): void => {
    if (path === targets.configFile) handlers.configChanged();
    else if (path === targets.rebootRequired) handlers.rebootRequired();
    else if (path.startsWith(targets.extensionsDir) && !/\/\.[^/]*$/.test(path)) handlers.extensionsChanged(path);
  };
  watcher.on("add", route).on("change", route).on("unlink", route);
  watcher.on("error", (err) => log.warning(`file watch: ${String(err)}`));
  return () => watcher.close();
}
