// The files the Kata configuration names, per hypervisor: the hypervisor binary and virtiofsd (regular,
// executable, and they run: `--version`), the guest kernel and the guest image or initrd (regular, readable).
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

async function checkHypervisor(
  ctx: PreflightContext,
  h: HypervisorConfig,
  executable: (path: string) => Promise<FileVerdict>,
): Promise<PreflightCheck[]> {
  const hypervisor = h.name;
  const from = `(${h.configFile})`;
  const fixRemedy = (what: string): string =>
    `reinstall the kata-containers extension, or point ${what} in ${h.configFile} at an existing file`;
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
      : executable(h.path).then((v) => report("hypervisor-binary", h.path ?? "", "path", v)),
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
