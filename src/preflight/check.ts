// What a preflight check is: a named probe of one aspect of the host that reports one or more results.
import type { CheckStatus, PreflightCheck } from "../status.ts";
import type { PreflightContext } from "./context.ts";

export type CheckGroup = "virtualisation" | "devices" | "payload" | "abi" | "selinux" | "host";

export interface Check {
  /** Stable id of the check; its results use this id or a more specific one ("vhost-vsock"). */
  id: string;
  group: CheckGroup;
  run(ctx: PreflightContext): Promise<PreflightCheck[]>;
}

/** A result; `remedy` is required for warn and fail so the operator always learns what to do next. */
export function result(
  id: string,
  status: CheckStatus,
  detail: string,
  extra: { remedy?: string; hypervisor?: string | null } = {},
): PreflightCheck {
  return {
    id,
    status,
    detail,
    remedy: status === "warn" || status === "fail" ? (extra.remedy ?? null) : null,
    hypervisor: extra.hypervisor ?? null,
  };
}
