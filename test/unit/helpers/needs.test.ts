// skipWithout decides between running, skipping and failing a test that needs a real component.
import { afterEach, describe, expect, it, vi } from "vitest";
import { skipWithout, unless } from "../../helpers/needs.ts";

afterEach(() => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});

describe("skipWithout", () => {
  it.each([
    ["true", null, false],
    [undefined, null, false],
    [undefined, "containerd is not installed", true],
    ["false", "containerd is not installed", true],
  ])("CI=%s, missing %s: skip is %s", (ci, reason, skip) => {
    vi.stubEnv("CI", ci);
    vi.spyOn(console, "log").mockImplementation(() => {});
    expect(skipWithout(reason, "the containerd test")).toBe(skip);
  });

  it("fails under CI=true, naming the test, the reason and the set-up", () => {
    vi.stubEnv("CI", "true");
    expect(() => skipWithout("containerd is not installed", "the containerd test")).toThrow(
      "the containerd test cannot run: containerd is not installed. Under CI=true that is a failure: run scripts/setup-debian.sh",
    );
  });

  it("says why it skips", () => {
    vi.stubEnv("CI", undefined);
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    skipWithout("no /dev/kvm", "the kvm test");
    expect(log).toHaveBeenCalledWith("skipping the kvm test: no /dev/kvm");
  });
});

describe("unless", () => {
  it.each([
    [true, null],
    [false, "why"],
  ])("ok=%s gives %s", (ok, reason) => expect(unless(ok, "why")).toBe(reason));
});
