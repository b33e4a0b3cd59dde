// QEMU with virtio-fs backs all guest memory with a shared file in /dev/shm, so a /dev/shm smaller than
// default_memory makes the VM fail to start. Other hypervisors share memory without /dev/shm (memfd).
import { statfs } from "node:fs/promises";
import type { PreflightCheck } from "../../status.ts";
import { type Check, result } from "../check.ts";
import { usesVirtioFs } from "../kata-config.ts";

const ID = "shm-size";
const MiB = 1024 * 1024;

export const shm: Check = {
  id: ID,
  group: "payload",
  async run(ctx) {
    const { hypervisors } = await ctx.kata();
    let sizeMiB: number | null = null;
    try {
      const fs = await statfs(ctx.host("/dev/shm"));
      sizeMiB = Math.floor((fs.bsize * fs.blocks) / MiB);
    } catch {
      // reported per hypervisor below
    }
    return hypervisors.map((h): PreflightCheck => {
      const hypervisor = h.name;
      if (h.name !== "qemu" || !usesVirtioFs(h)) {
        return result(ID, "skip", `${h.name} does not back guest memory with /dev/shm`, { hypervisor });
      }
      const memory = h.defaultMemoryMiB ?? 2048;
      if (sizeMiB === null) {
        return result(ID, "fail", "/dev/shm is not mounted", {
          remedy: "mount a tmpfs on /dev/shm (systemd does this at boot)",
          hypervisor,
        });
      }
      const detail = `/dev/shm ${sizeMiB} MiB, default_memory ${memory} MiB`;
      if (sizeMiB < memory) {
        return result(ID, "warn", `${detail}: a VM with the default memory does not fit`, {
          remedy: `mount -o remount,size=${Math.ceil((memory * 2) / 1024)}G /dev/shm, or lower default_memory in ${h.configFile}`,
          hypervisor,
        });
      }
      return result(ID, "pass", `${detail}: fits ${Math.floor(sizeMiB / memory)} VM(s) of the default size`, {
        hypervisor,
      });
    });
  },
};
