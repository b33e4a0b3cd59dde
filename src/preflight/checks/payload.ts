// The files the Kata configuration names, per hypervisor: the hypervisor binary, Firecracker's jailer and
// virtiofsd (regular, executable, and they run: `--version`), the guest kernel, the guest image or initrd and the
// guest firmware when one is named (regular, readable).
import { KATA_ETC_CONFIG } from "../../containerd/handlers.ts";
import type { PreflightCheck } from "../../status.ts";
import { type Check, result } from "../check.ts";
import type { PreflightContext } from "../context.ts";
import { type HypervisorConfig, usesVirtioFs } from "../kata-config.ts";
import { type FileVerdict, inspectExecutable, inspectReadable } from "../locate.ts";

export const payload: Check = {
  id: "payload",
  group: "payload",
  async run(ctx) {
    const { hypervisors } = await ctx.kata();
    // qemu and clh usually share one virtiofsd: run each executable once.
    const runs = new Map<string, Promise<FileVerdict>>();
    const executable = (path: string): Promise<FileVerdict> => {
      let pending = runs.get(path);
      if (pending === undefined) {
        pending = inspectExecutable(ctx, path);
        runs.set(path, pending);
      }
      return pending;
    };
    const perHypervisor = await Promise.all(hypervisors.map((h) => checkHypervisor(ctx, h, executable)));
    return perHypervisor.flat();
  },
};

/**
 * The configured hypervisor binary; when the Kata image does not carry it, the one a companion extension ships
 * (e.g. the sysext-bakery's cloud-hypervisor puts it in /usr/bin): that binary is checked instead, and the
 * verdict says Kata's configuration must name it.
 */
async function hypervisorBinary(
  ctx: PreflightContext,
  h: HypervisorConfig,
  path: string,
  executable: (path: string) => Promise<FileVerdict>,
  report: (id: string, label: string, key: string, verdict: FileVerdict) => PreflightCheck,
): Promise<PreflightCheck> {
  const own = await executable(path);
  const wanted = path.split("/").pop() ?? "";
  const companion = own.ok ? undefined : ctx.companions.find((c) => c.files.some((f) => f.split("/").pop() === wanted));
  if (companion === undefined) return report("hypervisor-binary", path, "path", own);
  const shipped = `/${companion.files.find((f) => f.split("/").pop() === wanted) ?? ""}`;
  const theirs = await executable(shipped);
  if (!theirs.ok) return report("hypervisor-binary", shipped, "path", theirs);
  return result(
    "hypervisor-binary",
    "fail",
    `${path} is not in the Kata image; companion ${companion.name} ships ${shipped}${theirs.version ? ` (${theirs.version})` : ""}`,
    { remedy: configure(h, `path = "${shipped}"`), hypervisor: h.name },
  );
}

/**
 * How to set a key for `h`. The shipped files are read-only inside the extension; the kata runtime handler runs
 * with /etc/kata-containers/configuration.toml whenever it exists, in place of the shipped defaults rather than on
 * top of them, so it starts as a whole copy.
 */
function configure(h: HypervisorConfig, setting: string): string {
  const section = `[hypervisor.${h.name}]`;
  return h.configFile === KATA_ETC_CONFIG
    ? `set ${setting} under ${section} in ${KATA_ETC_CONFIG}`
    : `put a copy of ${h.configFile} at ${KATA_ETC_CONFIG} with ${setting} under ${section}: the kata runtime handler runs with that file whenever it exists`;
}

async function checkHypervisor(
  ctx: PreflightContext,
  h: HypervisorConfig,
  executable: (path: string) => Promise<FileVerdict>,
): Promise<PreflightCheck[]> {
  const hypervisor = h.name;
  const from = `(${h.configFile})`;
  const fixRemedy = (key: string): string =>
    `reinstall the kata-containers extension, or ${configure(h, `${key} = <an existing file>`)}`;
  const report = (id: string, label: string, key: string, verdict: FileVerdict): PreflightCheck =>
    verdict.ok
      ? result(id, "pass", `${label}${verdict.version ? `: ${verdict.version}` : ` (${verdict.size} bytes)`}`, {
          hypervisor,
        })
      : result(id, "fail", verdict.problem, { remedy: fixRemedy(key), hypervisor });

  const jobs: Array<Promise<PreflightCheck>> = [];
  jobs.push(
    h.path === null
      ? Promise.resolve(result("hypervisor-binary", "skip", `no path in ${h.configFile}: built-in VMM`, { hypervisor }))
      : hypervisorBinary(ctx, h, h.path, executable, report),
  );

  if (!usesVirtioFs(h)) {
    jobs.push(
      Promise.resolve(
        result("virtiofsd", "skip", `shared_fs = ${h.sharedFs ?? "unset"}: no virtiofsd`, { hypervisor }),
      ),
    );
  } else if (h.virtioFsDaemon === null) {
    jobs.push(
      Promise.resolve(
        result(
          "virtiofsd",
          "fail",
          `shared_fs = ${h.sharedFs ?? "virtio-fs"} but virtio_fs_daemon is not set ${from}`,
          {
            remedy: fixRemedy("virtio_fs_daemon"),
            hypervisor,
          },
        ),
      ),
    );
  } else {
    const daemon = h.virtioFsDaemon;
    jobs.push(executable(daemon).then((v) => report("virtiofsd", daemon, "virtio_fs_daemon", v)));
  }

  jobs.push(
    h.kernel === null
      ? Promise.resolve(
          result("guest-kernel", "fail", `no kernel configured ${from}`, { remedy: fixRemedy("kernel"), hypervisor }),
        )
      : inspectReadable(ctx, h.kernel).then((v) => report("guest-kernel", h.kernel ?? "", "kernel", v)),
  );

  // Named only by some configurations (confidential guests' OVMF, Firecracker's jailer): checked when named.
  if (h.firmware !== null) {
    const firmware = h.firmware;
    jobs.push(inspectReadable(ctx, firmware).then((v) => report("guest-firmware", firmware, "firmware", v)));
  }
  if (h.jailerPath !== null) {
    const jailer = h.jailerPath;
    jobs.push(executable(jailer).then((v) => report("jailer", jailer, "jailer_path", v)));
  }

  const image = h.image ?? h.initrd;
  const key = h.image !== null ? "image" : "initrd";
  jobs.push(
    image === null
      ? Promise.resolve(
          result("guest-image", "fail", `neither image nor initrd configured ${from}`, {
            remedy: fixRemedy("image"),
            hypervisor,
          }),
        )
      : inspectReadable(ctx, image).then((v) => report("guest-image", image, key, v)),
  );
  return Promise.all(jobs);
}
