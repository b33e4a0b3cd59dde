// What Ignition leaves in /etc, for the end-to-end test, and the check of an Ignition config against the JSON schema
// of the spec's part that config/ignition.json uses (ignition-3.schema.json, written from the public spec). The
// Butane -> Ignition converter itself is src/delivery/provisioning.ts, which the build uses too.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv } from "ajv";
import { decodeDataUrl, type IgnitionConfig, type IgnitionFile } from "../../../src/delivery/provisioning.ts";
import type { EtcEntry } from "../../helpers/nspawn.ts";

export const validateIgnition = new Ajv({ allErrors: true, strict: true }).compile(
  JSON.parse(readFileSync(join(import.meta.dirname, "ignition-3.schema.json"), "utf8")) as object,
);

/**
 * What Ignition leaves in /etc, as the nspawn harness's etcFiles: files (data URLs decoded; a remote source is
 * fetched by `fetchRemote`), links, and units in /etc/systemd/system with their [Install] WantedBy= links for
 * `enabled: true` (Ignition enables through a preset file that systemd applies on first boot; same result).
 */
export function etcFilesOf(
  config: IgnitionConfig,
  fetchRemote: (file: IgnitionFile) => Buffer,
): Record<string, EtcEntry> {
  const etc: Record<string, EtcEntry> = {};
  const underEtc = (path: string): string => {
    if (!path.startsWith("/etc/")) throw new Error(`${path}: only /etc is modelled`);
    return path.slice("/etc/".length);
  };
  for (const f of config.storage?.files ?? []) {
    const content = f.contents.source.startsWith("data:") ? decodeDataUrl(f.contents.source) : fetchRemote(f);
    etc[underEtc(f.path)] = { content, mode: f.mode ?? 0o644 };
  }
  for (const l of config.storage?.links ?? []) etc[underEtc(l.path)] = { symlink: l.target };
  for (const u of config.systemd?.units ?? []) {
    if (u.contents === undefined) continue;
    etc[`systemd/system/${u.name}`] = u.contents;
    if (!u.enabled) continue;
    for (const target of wantedBy(u.contents)) {
      etc[`systemd/system/${target}.wants/${u.name}`] = { symlink: `/etc/systemd/system/${u.name}` };
    }
  }
  return etc;
}

function wantedBy(unitText: string): string[] {
  const install = unitText.split(/^\[Install\]\s*$/m)[1]?.split(/^\[/m)[0] ?? "";
  return [...install.matchAll(/^WantedBy=(.+)$/gm)].flatMap((m) => (m[1] ?? "").trim().split(/\s+/));
}
