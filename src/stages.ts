// Named stages, each with its undo right next to it (the shape of kata-deploy's installer). If a stage fails,
// the stages already done are undone in reverse order. Below the controller and the adapters: activation is built
// of them, and an adapter (containerd registration) offers its own.
import { asKataError, KataError } from "./errors.ts";
import type { Logger } from "./log/logger.ts";

export interface Stage {
  name: string;
  run(): Promise<void>;
  /** Puts the host back as it was before run(); absent when run() changes nothing that needs undoing. */
  undo?(): Promise<void>;
}

export class RolledBack extends KataError {
  readonly failedStage: string;
  readonly undoErrors: string[];
  constructor(failedStage: string, cause: KataError, undoErrors: string[]) {
    const tail = undoErrors.length > 0 ? `; undo also failed: ${undoErrors.join("; ")}` : "; rolled back";
    super(cause.code, `${failedStage}: ${cause.message}${tail}`, { remedy: cause.remedy, cause });
    this.failedStage = failedStage;
    this.undoErrors = undoErrors;
  }
}

export async function runStages(stages: readonly Stage[], log: Logger): Promise<void> {
  const done: Stage[] = [];
  for (const stage of stages) {
    try {
      log.debug(`stage ${stage.name}`);
      await stage.run();
      done.push(stage);
    } catch (err) {
      const cause = asKataError(err, "activation-failed");
      log.warning(`stage ${stage.name} failed, undoing ${done.length} stage(s): ${cause.message}`, {
        KATA_SYSEXT_STAGE: stage.name,
        ERROR_CODE: cause.code,
      });
      const undoErrors: string[] = [];
      for (const previous of done.reverse()) {
        if (previous.undo === undefined) continue;
        try {
          await previous.undo();
        } catch (undoErr) {
          undoErrors.push(`${previous.name}: ${asKataError(undoErr).message}`);
        }
      }
      throw new RolledBack(stage.name, cause, undoErrors);
    }
  }
}
