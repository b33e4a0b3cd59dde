// Getting one published image into the store: download (verified against its SHA256SUMS digest), inspect its
// own extension-release and payload, and admit it, or keep it aside in quarantine. Nothing here is linked. An image
// for another release of this OS is admitted too: the passes decide per host which stored images may be linked.
import type { Clock } from "../clock.ts";
import { KATA_DEFAULTS_DIR } from "../containerd/handlers.ts";
import { KataError } from "../errors.ts";
import { type Logger, MessageId } from "../log/logger.ts";
import type { ReconcileEvent, ReleaseSource } from "../model.ts";
import { compatible } from "../release/compat.ts";
import { type HostRelease, parseExtensionRelease } from "../release/os-release.ts";
import type { ImageStore } from "../store/store.ts";
import { type ImageContents, inspectImage, payloadProblems } from "../sysext/inspect.ts";

export interface AdmitDeps {
  store: ImageStore;
  arch: string;
  clock: Clock;
  log: Logger;
}

export async function fetchAndAdmit(
  deps: AdmitDeps,
  member: { name: string; source: Pick<ReleaseSource, "download" | "trust"> },
  image: { version: string; file: string; sha256: string },
  host: HostRelease,
  emit: (event: ReconcileEvent) => void,
): Promise<void> {
  const { name, source } = member;
  const log = deps.log.with({ KATA_SYSEXT_NAME: name, KATA_SYSEXT_VERSION: image.version });
  emit({ kind: "state", state: "fetching" });
  const downloaded = await source.download(image.file, image.sha256, deps.store.incomingDir, (progress) =>
    emit({ kind: "download", progress }),
  );
  emit({ kind: "state", state: "verifying" });
  const problems: string[] = [];
  // Set when the image is sound but made for another release of this OS (VERSION_ID, SYSEXT_LEVEL): stored, not
  // quarantined, since it may be what the host needs after an update (or needed before one). Pruned like any
  // other image; what it is stays remembered by digest (candidates.ts), so it is not fetched again to learn that.
  let otherRelease: string[] | null = null;
  let contents: ImageContents | null = null;
  try {
    contents = await inspectImage(downloaded.path, name);
  } catch (err) {
    // An image that cannot be opened at all goes to quarantine too, or every pass would download it again.
    if (!(err instanceof KataError && err.code === "inspect-failed")) throw err;
    problems.push(err.message);
  }
  if (contents !== null) {
    problems.push(...payloadProblems(contents, name));
    if (contents.extensionRelease !== null) {
      const release = parseExtensionRelease(contents.extensionRelease);
      const decision = compatible(host, release, { name, arch: deps.arch });
      if (decision.releaseBound === true) otherRelease = decision.reasons;
      else if (!decision.compatible) problems.push(...decision.reasons);
    }
  }
  if (contents === null || problems.length > 0) {
    const where = await deps.store.quarantine(downloaded.path, image.file, downloaded.sha256, problems.join("\n"));
    problems.splice(0, problems.length, ...problems.map((p) => p.replaceAll(downloaded.path, where)));
    log.error(`${image.file} failed inspection and was quarantined at ${where}: ${problems.join("; ")}`, {
      MESSAGE_ID: MessageId.verificationFailed,
      ERROR_CODE: "inspect-failed",
    });
    throw new KataError("inspect-failed", `${image.file} failed inspection: ${problems.join("; ")}`, {
      remedy: `the image is kept at ${where} for inspection; the source publishes an image that cannot merge here`,
    });
  }
  await deps.store.admit(downloaded.path, {
    file: image.file,
    name,
    version: image.version,
    arch: deps.arch,
    sha256: downloaded.sha256,
    bytes: downloaded.bytes,
    trust: source.trust,
    verifiedAt: deps.clock.now().toISOString(),
    extensionRelease: contents.extensionRelease ?? "",
    kataConfigs: contents.files.filter((f) => f.startsWith(`${KATA_DEFAULTS_DIR}/`)),
    files: contents.files,
  });
  // The same name may have failed inspection before with other bytes: that verdict was about those.
  await deps.store.clearQuarantine(image.file);
  if (otherRelease !== null) {
    log.notice(
      `verified and stored ${image.file}, made for another ${host.id ?? "OS"} release than ${host.versionId ?? "this one"} (${otherRelease.join("; ")}); it is not linked here, and is kept within [policy] keep (or as the image staged for that release); pruned, it is not fetched again while SHA256SUMS lists these bytes`,
    );
  } else {
    log.info(`verified and stored ${image.file} (${downloaded.bytes} bytes, ${source.trust})`);
  }
}
