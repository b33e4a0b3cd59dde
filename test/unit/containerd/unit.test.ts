// Which file containerd.service makes containerd read, and the drop-in that redirects it, for the unit shapes
// Flatcar documents: its own unit, the operator's ExecStart override without --config, a cgroupfs CONTAINERD_CONFIG.
import { describe, expect, it } from "vitest";
import {
  chooseBase,
  configOfCommandLine,
  expandWord,
  recordedChoice,
  renderUnitDropIn,
  type UnitView,
} from "../../../src/containerd/unit.ts";

/** A systemd variable reference, `${NAME}`, written so it is not read as a template placeholder. */
const braced = (name: string): string => `\${${name}}`;

const OURS = "/etc/kata-sysextd/containerd.toml";
const FRAGMENT = "/usr/lib/systemd/system/containerd.service";
const FLATCAR: UnitView = {
  execStart: {
    path: "/usr/bin/containerd",
    argv: ["/usr/bin/containerd", "--config", braced("CONTAINERD_CONFIG")],
    ignoreFailure: false,
  },
  environment: ["CONTAINERD_CONFIG=/usr/share/containerd/config.toml"],
  fragmentPath: FRAGMENT,
  dropInPaths: [],
};
const exec = (...argv: string[]) => ({ path: argv[0] ?? "", argv, ignoreFailure: false });

describe("chooseBase", () => {
  it.each([
    {
      shape: "Flatcar's own unit",
      view: FLATCAR,
      base: "/usr/share/containerd/config.toml",
      service: [`Environment=CONTAINERD_CONFIG=${OURS}`],
      why: /reads \$CONTAINERD_CONFIG, which its Environment= sets to \/usr\/share\/containerd\/config.toml/,
    },
    {
      shape: "the operator's cgroupfs CONTAINERD_CONFIG",
      view: {
        ...FLATCAR,
        environment: ["CONTAINERD_CONFIG=/usr/share/containerd/config-cgroupfs.toml"],
        dropInPaths: ["/etc/systemd/system/containerd.service.d/10-use-cgroupfs.conf"],
      },
      base: "/usr/share/containerd/config-cgroupfs.toml",
      service: [`Environment=CONTAINERD_CONFIG=${OURS}`],
      why: /config-cgroupfs\.toml \(from containerd\.service, 10-use-cgroupfs\.conf\)/,
    },
    {
      shape: "the operator's ExecStart without --config",
      view: {
        ...FLATCAR,
        execStart: exec("/usr/bin/containerd"),
        dropInPaths: ["/etc/systemd/system/containerd.service.d/10-custom.conf"],
      },
      base: "/etc/containerd/config.toml",
      service: ["ExecStart=", `ExecStart=/usr/bin/containerd --config ${OURS}`],
      why: /has no --config, so containerd reads its default \/etc\/containerd\/config\.toml/,
    },
    {
      shape: "a literal --config=FILE with other flags kept",
      view: { ...FLATCAR, execStart: exec("/opt/bin/containerd", "--log-level", "debug", "--config=/etc/ctd.toml") },
      base: "/etc/ctd.toml",
      service: ["ExecStart=", `ExecStart=/opt/bin/containerd --log-level debug --config=${OURS}`],
      why: /names \/etc\/ctd\.toml/,
    },
    {
      shape: "-c with a path built from a variable",
      view: {
        ...FLATCAR,
        execStart: exec("/usr/bin/containerd", "-c", `${braced("DIR")}/c.toml`),
        environment: ["DIR=/etc/x"],
      },
      base: "/etc/x/c.toml",
      service: ["ExecStart=", `ExecStart=/usr/bin/containerd -c ${OURS}`],
      why: /names \/etc\/x\/c\.toml/,
    },
  ])("$shape", ({ view, base, service, why }) => {
    const choice = chooseBase(view, OURS);
    expect(choice).toMatchObject({ base, service });
    expect(typeof choice === "string" ? choice : choice.why).toMatch(why);
  });

  it.each([
    { shape: "no ExecStart", view: { ...FLATCAR, execStart: null }, why: /has no ExecStart/ },
    { shape: "CONTAINERD_CONFIG unset", view: { ...FLATCAR, environment: [] }, why: /empty --config/ },
  ])("says why there is no base: $shape", ({ view, why }) => {
    expect(chooseBase(view, OURS)).toMatch(why);
  });

  it("round-trips the choice through the drop-in it writes", () => {
    const choice = chooseBase(FLATCAR, OURS);
    if (typeof choice === "string") throw new Error(choice);
    const text = renderUnitDropIn(choice, "abc");
    expect(text).toContain(`[Service]\nEnvironment=CONTAINERD_CONFIG=${OURS}\n`);
    expect(recordedChoice(text)).toEqual({ choice, unitFiles: "abc" });
    expect(recordedChoice("[Service]\nEnvironment=A=b\n")).toBeNull();
  });

  it("quotes words and doubles % in an ExecStart it writes", () => {
    const choice = chooseBase(
      { ...FLATCAR, execStart: exec("/usr/bin/containerd", "--log-level", "a b", "50%") },
      OURS,
    );
    expect(choice).toMatchObject({
      service: ["ExecStart=", `ExecStart=/usr/bin/containerd --log-level "a b" 50%% --config ${OURS}`],
    });
  });
});

describe("command lines and expansion", () => {
  it.each([
    { argv: ["/usr/bin/containerd"], reads: "/etc/containerd/config.toml" },
    { argv: ["/usr/bin/containerd", "--config", "/a"], reads: "/a" },
    { argv: ["containerd", "-c", "/a", "--config=/b"], reads: "/b" },
    { argv: ["containerd", "-config", "/a"], reads: "/a" },
    { argv: ["containerd", "--", "--config", "/a"], reads: "/etc/containerd/config.toml" },
  ])("$argv reads $reads", ({ argv, reads }) => {
    expect(configOfCommandLine(argv)).toBe(reads);
  });

  it("expands braced and bare variables and $$ as systemd does; unset names are empty", () => {
    expect(expandWord(`${braced("A")}/x-$A-$$-${braced("B")}`, ["A=1"])).toBe("1/x-1-$-");
  });
});
