// Tests that need a real component (containerd, systemd-nspawn, systemd-sysext, root) skip without it on a
// developer's machine, saying why. Under CI (CI=true) the machine was set up by scripts/setup-debian.sh, so a
// missing component is a broken set-up: the file fails instead of quietly running fewer tests.

/** True when the tests should skip (`reason` is not null and this is not CI); throws under CI=true. */
export function skipWithout(reason: string | null, what: string): boolean {
  if (reason === null) return false;
  if (process.env.CI === "true") {
    throw new Error(`${what} cannot run: ${reason}. Under CI=true that is a failure: run scripts/setup-debian.sh`);
  }
  console.log(`skipping ${what}: ${reason}`);
  return true;
}

/** null when `ok`, else the reason: for the one-line checks tests make before calling skipWithout. */
export const unless = (ok: boolean, reason: string): string | null => (ok ? null : reason);
