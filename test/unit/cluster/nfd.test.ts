// The NFD feature file's text: NFD's local format, labels in feature.node.kubernetes.io/, valid label values.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { featureFileText, handlerLabel, NOT_READY, nfdFeatureFile } from "../../../src/cluster/nfd.ts";
import { createLogger } from "../../../src/log/logger.ts";

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

describe("nfdFeatureFile", () => {
  let dir = "";
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("a file it cannot write is a warning said once, never a failed pass; it writes once it can", async () => {
    dir = mkdtempSync(join(tmpdir(), "kata-nfd-"));
    // The feature file's folder is a regular file: mkdir fails with ENOTDIR, as a read-only or wrong path would.
    const folder = join(dir, "features.d");
    writeFileSync(folder, "not a folder");
    const warnings: string[] = [];
    const log = createLogger((level, message) => {
      if (level === "warning") warnings.push(message);
    });
    const file = nfdFeatureFile(join(folder, "kata-sysextd"), log);

    await expect(file.withdraw("a switch starts")).resolves.toBeUndefined();
    await expect(file.publish({ ready: true, version: "3.32.0", handlers: ["kata"] })).resolves.toBeUndefined();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/not written to .*features\.d\/kata-sysextd: .*ReadWritePaths=/);

    rmSync(folder);
    await file.publish({ ready: true, version: "3.32.0", handlers: ["kata"] });
    expect(readFileSync(join(folder, "kata-sysextd"), "utf8")).toBe(
      `${HEADER}${P}.ready=true\n${P}.version=3.32.0\n${P}.handler.kata=true\n`,
    );
  });

  it("a file that already says it is left as it is; one that says something else is replaced", async () => {
    dir = mkdtempSync(join(tmpdir(), "kata-nfd-"));
    const path = join(dir, "kata-sysextd");
    const ready = { ready: true, version: "3.32.0", handlers: [] };
    writeFileSync(path, featureFileText(ready)); // as the last pass (another process) left it
    const before = statSync(path).ino;
    const infos: string[] = [];
    const log = createLogger((level, message) => {
      if (level === "info") infos.push(message);
    });
    await nfdFeatureFile(path, log).publish(ready);
    expect(statSync(path).ino).toBe(before); // not replaced by a rename
    expect(infos).toEqual([]);

    await nfdFeatureFile(path, log).withdraw("a switch starts");
    expect(readFileSync(path, "utf8")).toBe(`${HEADER}${P}.ready=false\n`);
    expect(infos).toEqual(["Node Feature Discovery labels: not ready (a switch starts)"]);
  });
});
