// Which daemon kata-sysextctl's daemon verbs talk to, and the hint when it does not answer: a pure decision over
// the flag, the environment and which sockets exist.
import { describe, expect, it } from "vitest";
import { locateDaemon } from "../../../src/cli/ctl.ts";

const DEMO = "/src/kata-sysextd/demo/root";
const HOST_SOCKET = "/run/kata-sysextd/api.sock";
const DEMO_SOCKET = `${DEMO}/run/kata-sysextd/api.sock`;
const SYSTEMD = "/run/systemd/system";

describe("locateDaemon", () => {
  it.each([
    // flag, env, existing paths, root, hint contains, note contains
    ["/r", "/e", [HOST_SOCKET, DEMO_SOCKET, SYSTEMD], "/r", "with --root /r running?", null],
    [undefined, "/e", [HOST_SOCKET, DEMO_SOCKET], "/e", "with --root /e running?", null],
    [undefined, "", [SYSTEMD], "/", "systemctl status kata-sysextd", null],
    [undefined, undefined, [HOST_SOCKET, DEMO_SOCKET, SYSTEMD], "/", "systemctl status kata-sysextd", null],
    [undefined, undefined, [DEMO_SOCKET], DEMO, "`npm start` runs the demo's", "using the demo's daemon"],
    [undefined, undefined, [], "/", "no systemd to start it", null],
    [undefined, undefined, [SYSTEMD], "/", "systemctl status kata-sysextd", null],
  ] as const)("--root %s, $KATA_SYSEXTD_ROOT %s, existing %j: %s", (flag, env, existing, root, hint, note) => {
    const located = locateDaemon(flag, env, (path) => (existing as readonly string[]).includes(path), DEMO);
    expect(located.root).toBe(root);
    expect(located.hint).toContain(hint);
    if (note === null) expect(located.note).toBeNull();
    else expect(located.note).toContain(note);
  });
});
