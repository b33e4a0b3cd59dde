// /proc/cpuinfo, first processor: the vendor and the flags the virtualisation checks look at.

export interface CpuInfo {
  vendor: "intel" | "amd" | "other";
  vendorId: string;
  flags: Set<string>;
}

export function parseCpuinfo(text: string): CpuInfo | null {
  const first = text.split(/\n\s*\n/)[0] ?? "";
  const field = (name: string): string | undefined =>
    new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(first)?.[1]?.trim();
  const vendorId = field("vendor_id");
  const flags = field("flags");
  if (vendorId === undefined && flags === undefined) return null;
  const vendor = vendorId === "GenuineIntel" ? "intel" : vendorId === "AuthenticAMD" ? "amd" : "other";
  return { vendor, vendorId: vendorId ?? "unknown", flags: new Set((flags ?? "").split(/\s+/).filter(Boolean)) };
}
