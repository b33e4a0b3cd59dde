// File watches (chokidar): the configuration and the sysupdate transfer file it names (hot reload), the active link and the extension directories
// (someone changed them behind our back), /run/reboot-required, and state files moved aside as unusable (the
// operator removes them). Each change becomes one callback; the daemon decides what it means.
import { basename, dirname, resolve } from "node:path";
import { watch } from "chokidar";
import type { Logger } from "../log/logger.ts";

export interface WatchTargets {
  configFile: string;
  /** The transfer file [source] sysupdate named at start (host path); null when the source is a url. */
  transferFile: string | null;
  extensionsDir: string;
  rebootRequired: string;
  /** state.json: its moved-aside copies (`state.json.corrupt-<time>`, store/state.ts) are watched in its folder. */
  stateFile: string;
}

export interface WatchHandlers {
  configChanged(): void;
  extensionsChanged(path: string): void;
  /** The reboot sentinel appeared or changed (not when it went away). */
  rebootRequired(): void;
  /** A moved-aside state file appeared or went away. */
  stateFilesChanged(): void;
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
  // A watcher of its own: state.json itself is replaced on every update, which the other one's write-settling
  // would follow for nothing. Only the moved-aside files get through.
  const stateDir = resolve(dirname(targets.stateFile));
  const movedAside = `${basename(targets.stateFile)}.corrupt-`;
  const states = watch(stateDir, {
    ignoreInitial: true,
    depth: 0,
    ignored: (path) => resolve(path) !== stateDir && !basename(path).startsWith(movedAside),
  });
  states
    .on("add", () => handlers.stateFilesChanged())
    .on("unlink", () => handlers.stateFilesChanged())
    .on("error", (err) => log.warning(`file watch: ${String(err)}`));
  return async () => {
    await Promise.all([watcher.close(), states.close()]);
  };
}
