// The NFD feature file's text: NFD's local format, labels in feature.node.kubernetes.io/, valid label values.
import { describe, expect, it } from "vitest";
import { featureFileText, handlerLabel, NOT_READY } from "../../../src/cluster/nfd.ts";

const HEADER = "# Written by kata-sysextd: this node's Kata readiness. Do not edit; it is rewritten.\n";
const P = "feature.node.kubernetes.io/kata-sysextd";

describe("featureFileText", () => {
  it.each([
    ["not ready", NOT_READY, `${P}.ready=false\n`],
    [
      "not ready keeps no version or handler",
      { ready: false, version: "3.32.0", handlers: ["kata"] },
      `${P}.ready=false\n`,
    ],
    [
      "ready with the version and each proven handler, sorted",
      { ready: true, version: "3.32.0", handlers: ["kata-qemu", "kata"] },
      `${P}.ready=true\n${P}.version=3.32.0\n${P}.handler.kata=true\n${P}.handler.kata-qemu=true\n`,
    ],
    [
      "a version with a build suffix becomes a valid label value",
      { ready: true, version: "3.32.0+flatcar/1", handlers: [] },
      `${P}.ready=true\n${P}.version=3.32.0-flatcar-1\n`,
    ],
  ])("%s", (_what, readiness, body) => {
    expect(featureFileText(readiness)).toBe(HEADER + body);
  });

  it.each([
    ["kata", `${P}.handler.kata`],
    ["io.containerd.runc.v2", `${P}.handler.io.containerd.runc.v2`],
    ["kata/odd name", `${P}.handler.kata-odd-name`],
  ])("labels handler %s as %s", (handler, label) => {
    expect(handlerLabel(handler)).toBe(label);
  });
});
