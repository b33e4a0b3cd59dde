// resolveUnderRoot: host paths under --root, symlinks followed inside the root as systemd's chase_symlinks does.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { resolveUnderRoot } from "../../src/paths.ts";

const root = mkdtempSync(join(tmpdir(), "kata-paths-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
mkdirSync(join(root, "etc"));
mkdirSync(join(root, "usr/lib"), { recursive: true });
writeFileSync(join(root, "usr/lib/os-release"), "ID=flatcar\n");
symlinkSync("/usr/lib/os-release", join(root, "etc/abs"));
symlinkSync("../../../../../usr/lib/os-release", join(root, "etc/rel-escape"));
symlinkSync("/usr/lib/none", join(root, "etc/dangling"));
for (let i = 0; i <= 32; i++) symlinkSync(`/etc/chain${i + 1}`, join(root, `etc/chain${i}`));
writeFileSync(join(root, "etc/chain33"), "end\n");
const errno = (p: Promise<unknown>): Promise<unknown> => p.catch((e: NodeJS.ErrnoException) => e.code);

describe("resolveUnderRoot", () => {
  it("re-roots absolute targets and stops '..' at the root", async () => {
    const target = join(root, "usr/lib/os-release");
    expect(await resolveUnderRoot(root, "/etc/abs")).toBe(target);
    expect(await resolveUnderRoot(root, "/etc/rel-escape")).toBe(target);
    expect(await resolveUnderRoot(root, "/../../usr/./lib/os-release")).toBe(target);
  });

  it("rejects with ENOENT for a missing component, so callers can fall back as systemd does", async () => {
    expect(await errno(resolveUnderRoot(root, "/etc/dangling"))).toBe("ENOENT");
    expect(await errno(resolveUnderRoot(root, "/no/such"))).toBe("ENOENT");
  });

  it("follows at most 32 links (systemd's CHASE_MAX)", async () => {
    expect(await resolveUnderRoot(root, "/etc/chain1")).toBe(join(root, "etc/chain33"));
    expect(await errno(resolveUnderRoot(root, "/etc/chain0"))).toBe("ELOOP");
  });
});
