// Which companion extensions are active, with the files their images ship: the preflight looks there for a
// hypervisor the Kata image lacks. One function for the daemon and `kata-sysextctl preflight`, so both judge
// the same host the same way.
import type { Config } from "../config/schema.ts";
import type { HostPaths } from "../paths.ts";
import { ActiveLink, activeFile } from "./link.ts";
import { ImageStore } from "./store.ts";

export async function activeCompanions(paths: HostPaths, config: Config): Promise<{ name: string; files: string[] }[]> {
  const store = new ImageStore(paths.storeDir, paths.quarantineDir);
  const found: { name: string; files: string[] }[] = [];
  for (const companion of config.companions) {
    const link = await new ActiveLink(paths.activeLink(companion.name), paths.storeDir).read();
    const file = activeFile(link);
    const image = file === null ? null : await store.get(file);
    if (image !== null) found.push({ name: companion.name, files: image.files });
  }
  return found;
}
