// File watches (chokidar): the configuration and the sysupdate transfer file it names (hot reload), the active link and the extension directories
// (someone changed them behind our back), and /run/reboot-required. Each change becomes one callback; the
// daemon decides what it means.
import { watch } from "chokidar";
import type { Logger } from "../log/logger.ts";

export interface WatchTargets {
  configFile: string;
  /** The transfer file [source] sysupdate named at start (host path); null when the source is a url. */
  transferFile: string | null;
  extensionsDir: string;
  rebootRequired: string;
}

export interface WatchHandlers {
  configChanged(): void;
  extensionsChanged(path: string): void;
  /** The reboot sentinel appeared or changed (not when it went away). */
  rebootRequired(): void;
}

export function watchFiles(targets: WatchTargets, handlers: WatchHandlers, log: Logger): () => Promise<void> {
  const files = [targets.configFile, ...(targets.transferFile === null ? [] : [targets.transferFile])];
  const watcher = watch([...files, targets.extensionsDir, targets.rebootRequired], {
    ignoreInitial: true,
    depth: 0,
    // Atomic replaces (rename over) are what editors and we do; wait until the write settles.
    awaitWriteFinish: { stabilityThreshold: 200, pollInterval: 50 },
  });
  const route = (path: string, gone = false): void => {
    if (files.includes(path)) handlers.configChanged();
    else if (path === targets.rebootRequired) gone || handlers.rebootRequired();
    else if (path.startsWith(targets.extensionsDir) && !/\/\.[^/]*$/.test(path)) handlers.extensionsChanged(path);
  };
  watcher
    .on("add", (path) => route(path))
    .on("change", (path) => route(path))
    .on("unlink", (path) => route(path, true));
  watcher.on("error", (err) => log.warning(`file watch: ${String(err)}`));
  return () => watcher.close();
}
