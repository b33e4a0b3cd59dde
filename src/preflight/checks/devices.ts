// Devices each configured hypervisor needs. QEMU, Firecracker and StratoVirt talk to the agent over vhost-vsock
// (/dev/vhost-vsock); Cloud Hypervisor and Dragonball use hybrid vsock over a unix socket and do not. QEMU
// also uses vhost-net unless disable_vhost_net is set. Every hypervisor needs /dev/net/tun for tap networking.
import type { PreflightCheck } from "../../status.ts";
import { type Check, result } from "../check.ts";
import { deviceExists } from "../device.ts";

export const VHOST_VSOCK = new Set(["qemu", "firecracker", "stratovirt"]);
const HYBRID_VSOCK = new Set(["clh", "dragonball"]);

export const devices: Check = {
  id: "devices",
  group: "devices",
  async run(ctx) {
    const { hypervisors } = await ctx.kata();
    const modules = await ctx.modules();
    const [vsock, vhostNet, tun] = await Promise.all(
      ["/dev/vhost-vsock", "/dev/vhost-net", "/dev/net/tun"].map((d) => deviceExists(ctx, d)),
    );
    const mod = async (name: string): Promise<string> => `${name} ${await modules.state(name)}`;
    const out: PreflightCheck[] = [
      tun === true
        ? result("net-tun", "pass", "/dev/net/tun present")
        : result("net-tun", "fail", "/dev/net/tun missing: no tap networking for any VM", { remedy: "modprobe tun" }),
    ];
    for (const h of hypervisors) {
      const hypervisor = h.name;
      if (HYBRID_VSOCK.has(h.name)) {
        out.push(result("vhost-vsock", "pass", "not needed: hybrid vsock over a unix socket", { hypervisor }));
      } else if (VHOST_VSOCK.has(h.name)) {
        out.push(
          vsock === true
            ? result("vhost-vsock", "pass", `/dev/vhost-vsock present (${await mod("vhost_vsock")})`, { hypervisor })
            : result("vhost-vsock", "fail", `/dev/vhost-vsock missing (${await mod("vhost_vsock")})`, {
                remedy: "modprobe vhost_vsock (and add it to /etc/modules-load.d/ to survive reboots)",
                hypervisor,
              }),
        );
      } else {
        out.push(result("vhost-vsock", "skip", `unknown vsock needs for hypervisor "${h.name}"`, { hypervisor }));
      }
      out.push(vhostNetResult(h.name, h.disableVhostNet, vhostNet === true, await mod("vhost_net")));
    }
    return out;
  },
};

function vhostNetResult(hypervisor: string, disabled: boolean, present: boolean, module: string): PreflightCheck {
  if (hypervisor !== "qemu") {
    return result("vhost-net", "skip", `${hypervisor} does not use vhost-net`, { hypervisor });
  }
  if (disabled) return result("vhost-net", "skip", "disable_vhost_net = true in the configuration", { hypervisor });
  return present
    ? result("vhost-net", "pass", `/dev/vhost-net present (${module})`, { hypervisor })
    : result("vhost-net", "fail", `/dev/vhost-net missing (${module})`, {
        remedy: "modprobe vhost_net, or set disable_vhost_net = true in the QEMU configuration (slower networking)",
        hypervisor,
      });
}
