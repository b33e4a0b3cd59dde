// `[source] sysupdate`: what a systemd-sysupdate transfer file says, as kata-sysextd reads it. The bakery's own
// file first (as its lib/sysupdate.conf.tmpl renders for kata-containers), then one refusal per key it cannot honour.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config/load.ts";
import { parseTransfer } from "../../../src/config/sysupdate.ts";

const FILE = "/etc/sysupdate.kata-containers.d/kata-containers.conf";
const BAKERY = `[Transfer]
Verify=false

[Source]
Type=url-file
Path=https://extensions.flatcar.org/extensions/kata-containers/
MatchPattern=kata-containers-@v-%a.raw

[Target]
InstancesMax=3
Type=regular-file
Path=/opt/extensions/kata-containers
CurrentSymlink=/etc/extensions/kata-containers.raw
`;

const SOURCE = (lines: string) => `[Source]\nType=url-file\nPath=https://m.example/k/\n${lines}`;

describe("parseTransfer", () => {
  it("reads the sysext-bakery's transfer file; its [Target] is noted, not used", () => {
    const t = parseTransfer(BAKERY, FILE);
    expect(t).toMatchObject({
      path: "https://extensions.flatcar.org/extensions/kata-containers/",
      name: "kata-containers",
      verify: "checksum",
    });
    expect(t.notes).toEqual([
      `${FILE}: [Target] (InstancesMax=3, Type=regular-file, Path=/opt/extensions/kata-containers, CurrentSymlink=/etc/extensions/kata-containers.raw) is not used: kata-sysextd keeps its own verified store under /var/lib/kata-sysextd/images and links /etc/extensions/kata-containers.raw itself`,
    ]);
  });

  it.each<[string, string, Partial<ReturnType<typeof parseTransfer>>]>([
    [
      "Verify= absent: sysupdate verifies by default",
      SOURCE("MatchPattern=kata-containers-@v-%a.raw\n"),
      {
        verify: "signature",
      },
    ],
    [
      "Verify=yes",
      `[Transfer]\nVerify=yes\n${SOURCE("MatchPattern=kata-containers-@v-%a.raw\n")}`,
      {
        verify: "signature",
      },
    ],
    ["Verify=0", `[Transfer]\nVerify=0\n${SOURCE("MatchPattern=kata-containers-@v-%a.raw\n")}`, { verify: "checksum" }],
    [
      "Path= without the final slash",
      "[Source]\nType=url-file\nPath=https://m.example/k\nMatchPattern=x-@v-%a.raw\n",
      {
        path: "https://m.example/k/",
        name: "x",
      },
    ],
    [
      "an empty MatchPattern= resets the list",
      SOURCE("MatchPattern=old-@v-%a.raw\nMatchPattern=\nMatchPattern=new-@v-%a.raw\n"),
      {
        name: "new",
      },
    ],
    [
      "comments, blank lines, spaces around =",
      `# bakery\n\n[Source]\n; c\nType = url-file\nPath = https://m.example/k/\nMatchPattern = cloud-hypervisor-@v-%a.raw\n`,
      {
        name: "cloud-hypervisor",
      },
    ],
  ])("%s", (_title, text, want) => {
    expect(parseTransfer(text, FILE)).toMatchObject(want);
  });

  it.each<[string, string, string]>([
    [
      "a [Transfer] key it cannot honour",
      `[Transfer]\nMinVersion=3.30\n${SOURCE("MatchPattern=k-@v-%a.raw\n")}`,
      `${FILE}:2: [Transfer] MinVersion=: kata-sysextd cannot honour this`,
    ],
    [
      "ProtectVersion=",
      `[Transfer]\nProtectVersion=%A\n${SOURCE("MatchPattern=k-@v-%a.raw\n")}`,
      ":2: [Transfer] ProtectVersion=: kata-sysextd cannot honour this",
    ],
    [
      "another source type",
      "[Source]\nType=url-tar\nPath=https://m.example/k/\nMatchPattern=k-@v-%a.raw\n",
      ":2: [Source] Type=: kata-sysextd cannot honour this: only url-file sources",
    ],
    [
      "a [Source] key it cannot honour",
      SOURCE("MatchPattern=k-@v-%a.raw\nPathRelativeTo=boot\n"),
      ":5: [Source] PathRelativeTo=: kata-sysextd cannot honour this",
    ],
    [
      "a wildcard other than @v",
      SOURCE("MatchPattern=k-@v-%a-@u.raw\n"),
      ':4: [Source] MatchPattern=: kata-sysextd cannot honour this: "@u" in MatchPattern=',
    ],
    [
      "a specifier other than %a",
      SOURCE("MatchPattern=k-@v-%w.raw\n"),
      ':4: [Source] MatchPattern=: kata-sysextd cannot honour this: "%w" in MatchPattern=',
    ],
    ["another file name form", SOURCE("MatchPattern=k_@v_%a.raw\n"), "is not of the form <name>-@v-%a.raw"],
    ["no architecture in the pattern", SOURCE("MatchPattern=k-@v.raw\n"), "is not of the form <name>-@v-%a.raw"],
    ["several patterns", SOURCE("MatchPattern=k-@v-%a.raw k-@v-%a.raw.xz\n"), "several patterns"],
    [
      "an extension name that is none",
      SOURCE("MatchPattern=.k-@v-%a.raw\n"),
      'the extension name ".k" in MatchPattern= starts with "."',
    ],
    [
      "an unknown section",
      `[Install]\nWantedBy=x\n${SOURCE("MatchPattern=k-@v-%a.raw\n")}`,
      `${FILE}:2: unknown section [Install]`,
    ],
    ["no Type=", "[Source]\nPath=https://m.example/k/\nMatchPattern=k-@v-%a.raw\n", "[Source] has no Type="],
    ["no Path=", "[Source]\nType=url-file\nMatchPattern=k-@v-%a.raw\n", "[Source] has no Path="],
    ["no MatchPattern=", "[Source]\nType=url-file\nPath=https://m.example/k/\n", "[Source] has no MatchPattern="],
    [
      "a Path= that is no http(s) URL",
      "[Source]\nType=url-file\nPath=/srv/k/\nMatchPattern=k-@v-%a.raw\n",
      ':3: [Source] Path=: "/srv/k/" is not a URL',
    ],
    [
      "a Path= with a password",
      "[Source]\nType=url-file\nPath=https://u:p@m.example/k/\nMatchPattern=k-@v-%a.raw\n",
      "the URL carries credentials",
    ],
    [
      "a Path= with a query, which the files' URLs would drop",
      "[Source]\nType=url-file\nPath=https://m.example/k?token=t\nMatchPattern=k-@v-%a.raw\n",
      ":3: [Source] Path=: the URL has a query",
    ],
    [
      "a Verify= that is no boolean",
      `[Transfer]\nVerify=maybe\n${SOURCE("MatchPattern=k-@v-%a.raw\n")}`,
      ':2: [Transfer] Verify=: "maybe" is not a boolean',
    ],
    ["a line without =", "[Source]\nType url-file\n", `${FILE}:2: "Type url-file" is not a KEY=VALUE line`],
  ])("refuses %s, naming file, line and key", (_title, text, message) => {
    const parse = () => parseTransfer(text, FILE);
    expect(parse).toThrow(new RegExp(`^${FILE.replaceAll(".", "\\.")}:\\d+: `));
    expect(parse).toThrow(
      expect.objectContaining({
        code: "config-invalid",
        message: expect.stringContaining(message),
        remedy: expect.stringMatching(/\S/),
      }),
    );
  });
});

describe("loadConfig with [source] sysupdate", () => {
  const root = mkdtempSync(join(tmpdir(), "cfg-sysupdate-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const host = (path: string) => join(root, path);
  const config = join(root, "config.toml");
  mkdirSync(join(root, "etc/sysupdate.kata-containers.d"), { recursive: true });
  writeFileSync(host(FILE), BAKERY);

  it("takes name, verification and the source directory from the transfer file, read under --root", async () => {
    writeFileSync(config, `[source]\nsysupdate = "${FILE}"\nkeyring = "/etc/k.asc"\n`);
    const loaded = await loadConfig(config, { host });
    expect(loaded.config.source).toMatchObject({
      name: "kata-containers",
      verify: "checksum",
      keyring: "/etc/k.asc",
      sysupdate: FILE,
      path: "https://extensions.flatcar.org/extensions/kata-containers/",
    });
    expect(loaded.notes).toHaveLength(1);
  });

  it("refuses url, name or verify beside it, and a transfer file that is not there", async () => {
    writeFileSync(config, `[source]\nurl = "https://m.example/"\nsysupdate = "${FILE}"\n`);
    await expect(loadConfig(config, { host })).rejects.toMatchObject({
      code: "config-invalid",
      message: `${config}:2: source.url and source.sysupdate exclude each other: the transfer file says where images come from`,
    });
    writeFileSync(config, `[source]\nsysupdate = "/etc/sysupdate.d/absent.conf"\n`);
    await expect(loadConfig(config, { host })).rejects.toMatchObject({
      code: "config-unreadable",
      message: "source.sysupdate: /etc/sysupdate.d/absent.conf does not exist",
    });
  });
});
