// Differential test: for every case, the real systemd-sysext (252 on these machines) merges the extension under
// --root in a private mount namespace, once as a directory (var/lib/extensions/<name>) and once as a squashfs
// image (etc/extensions/<name>.raw); compatible() must say exactly what systemd did. The cases marked `whole`
// are about the image rather than its release file's text (which file systemd reads, what the image ships): there
// the verdict is admission's whole one (inspectImage, payloadProblems, compatible()), judged from the .raw.
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KataError } from "../../../src/errors.ts";
import { run } from "../../../src/exec.ts";
import { type CompatDecision, compatible } from "../../../src/release/compat.ts";
import {
  type ExtensionRelease,
  extensionReleasePath,
  hostArchitecture,
  parseExtensionRelease,
  readExtensionRelease,
  readHostReleaseUnder,
} from "../../../src/release/os-release.ts";
import { inspectImage, payloadProblems } from "../../../src/sysext/inspect.ts";
import { buildImage, buildTree, type FileSpec } from "../../helpers/images.ts";
import { skipWithout, unless } from "../../helpers/needs.ts";

const FLATCAR = "ID=flatcar\nID_LIKE=coreos\nVERSION_ID=4593.2.5\nSYSEXT_LEVEL=1.0\n";
const FLATCAR_NO_LEVEL = "ID=flatcar\nID_LIKE=coreos\nVERSION_ID=4593.2.5\n";
const FLATCAR_NO_VERSION = "ID=flatcar\nSYSEXT_LEVEL=1.0\n";
const ROLLING = "ID=arch\nNAME=Arch\n";
const MARKER = "usr/share/kata-differential/marker";

interface Case {
  title: string;
  /** Host os-release text (usr/lib/os-release). */
  host?: string;
  /** Raw bytes for the host os-release instead of `host`. */
  hostBytes?: Buffer;
  /** Also an /etc/os-release, which systemd reads first. */
  etcHost?: string;
  /** /etc/os-release as a symlink to this target instead (systemd follows it inside the --root). */
  etcLink?: string;
  /** extension-release text; null leaves the file out. */
  ext: string | null;
  /** Raw bytes for the release file instead of `ext` (for encodings a string cannot carry). */
  extBytes?: Buffer;
  /** Image name as systemd sees it: the directory name, and the .raw file's name without ".raw". */
  image?: string;
  /** File name of the release file when it is not extension-release.<image>. */
  releaseFile?: string;
  /** What compatible() answers (kept in the table so the corpus reads as a specification). */
  expect: boolean;
  /** Where systemd 252 decides otherwise by design (documented in src/release/ and src/sysext/inspect.ts). */
  differs252?: string;
  /** More files in the image: symlinks, device nodes, setuid files, xattrs (test/helpers/images.ts). */
  files?: Record<string, FileSpec>;
  /** Judged by admission's whole verdict on the image, not by the release file's text alone. */
  whole?: true;
}

/** security.capability granting cap_sys_admin=ep, as setcap writes it (setfattr's 0s: base64). */
const CAP_SYS_ADMIN = { "security.capability": "0sAQAAAgAAIAAAAAAAAAAAAAAAAAA=" };
const STRICT_FALSE = { "user.extension-release.strict": "false" };
const RELEASE_D = "usr/lib/extension-release.d";

const any = "ID=_any\n";
const CASES: Case[] = [
  // systemd's rules, one at a time
  {
    title: "sysext-bakery release file",
    ext: "ID=_any\nARCHITECTURE=x86-64\nEXTENSION_RELOAD_MANAGER=1\n",
    expect: true,
  },
  { title: "ID=_any alone", ext: any, expect: true },
  { title: "ID=_any for another architecture", ext: "ID=_any\nARCHITECTURE=arm64\n", expect: false },
  { title: "ARCHITECTURE=_any", ext: "ID=_any\nARCHITECTURE=_any\n", expect: true },
  { title: "ARCHITECTURE= empty", ext: "ID=_any\nARCHITECTURE=\n", expect: true },
  { title: "ARCHITECTURE in uname spelling", ext: "ID=_any\nARCHITECTURE=x86_64\n", expect: false },
  { title: "ARCHITECTURE upper case", ext: "ID=_any\nARCHITECTURE=X86-64\n", expect: false },
  { title: "ARCHITECTURE quoted", ext: 'ID=_any\nARCHITECTURE="x86-64"\n', expect: true },
  { title: "ID and SYSEXT_LEVEL match", ext: "ID=flatcar\nSYSEXT_LEVEL=1.0\n", expect: true },
  { title: "SYSEXT_LEVEL mismatch", ext: "ID=flatcar\nSYSEXT_LEVEL=2.0\n", expect: false },
  { title: "VERSION_ID match, no level", ext: "ID=flatcar\nVERSION_ID=4593.2.5\n", expect: true },
  { title: "VERSION_ID mismatch", ext: "ID=flatcar\nVERSION_ID=4593.2.4\n", expect: false },
  { title: "level decides over VERSION_ID", ext: "ID=flatcar\nSYSEXT_LEVEL=1.0\nVERSION_ID=1\n", expect: true },
  {
    title: "level mismatch despite VERSION_ID",
    ext: "ID=flatcar\nSYSEXT_LEVEL=2\nVERSION_ID=4593.2.5\n",
    expect: false,
  },
  { title: "ID only, host has versions", ext: "ID=flatcar\n", expect: false },
  { title: "other ID", ext: "ID=debian\nSYSEXT_LEVEL=1.0\n", expect: false },
  { title: "ID from host ID_LIKE", ext: "ID=coreos\nSYSEXT_LEVEL=1.0\n", expect: false },
  { title: "no ID", ext: "ARCHITECTURE=x86-64\n", expect: false },
  { title: "ID= empty", ext: "ID=\nSYSEXT_LEVEL=1.0\n", expect: false },
  // SYSEXT_SCOPE
  { title: "SYSEXT_SCOPE=system", ext: "ID=_any\nSYSEXT_SCOPE=system\n", expect: true },
  { title: "SYSEXT_SCOPE=portable", ext: "ID=_any\nSYSEXT_SCOPE=portable\n", expect: false },
  { title: "SYSEXT_SCOPE initrd portable", ext: 'ID=_any\nSYSEXT_SCOPE="initrd portable"\n', expect: false },
  { title: "SYSEXT_SCOPE portable system", ext: "ID=_any\nSYSEXT_SCOPE='portable   system'\n", expect: true },
  { title: "SYSEXT_SCOPE= empty", ext: "ID=_any\nSYSEXT_SCOPE=\n", expect: false },
  { title: "SYSEXT_SCOPE upper case", ext: "ID=_any\nSYSEXT_SCOPE=System\n", expect: false },
  // quoting and syntax oddities
  { title: "ID double-quoted", ext: 'ID="_any"\n', expect: true },
  { title: "single quotes", ext: "ID='flatcar'\nSYSEXT_LEVEL='1.0'\n", expect: true },
  { title: "quote then text concatenates", ext: 'ID="flat"car\nSYSEXT_LEVEL=1.0\n', expect: true },
  { title: "quote, space, text concatenates", ext: "ID='flat' car\nSYSEXT_LEVEL=1.0\n", expect: true },
  { title: "quotes inside a bare value stay", ext: 'ID=flat"car"\nSYSEXT_LEVEL=1.0\n', expect: false },
  { title: "trailing space inside quotes kept", ext: 'ID=flatcar\nSYSEXT_LEVEL="1.0 "\n', expect: false },
  { title: "trailing space outside quotes chomped", ext: "ID=flatcar   \nSYSEXT_LEVEL=1.0 \t\n", expect: true },
  { title: "backslash escape in bare value", ext: "ID=flat\\car\nSYSEXT_LEVEL=1.0\n", expect: true },
  { title: "backslash-t inside double quotes kept", ext: 'ID="flat\\car"\nSYSEXT_LEVEL=1.0\n', expect: false },
  { title: "escaped quote inside double quotes", ext: 'ID="_a\\"ny"\n', expect: false },
  { title: "escaped dollar inside double quotes", ext: 'ID=_any\nARCHITECTURE="x86-64\\$"\n', expect: false },
  { title: "no shell expansion", ext: "ID=$HOST_ID\n", expect: false },
  { title: "spaces around =", ext: "  ID  =   flatcar\nSYSEXT_LEVEL = 1.0\n", expect: true },
  { title: "export prefix is part of the key", ext: "export ID=_any\n", expect: false },
  { title: "comments and blank lines", ext: "# a comment\n\n; another\n   \nID=_any\n", expect: true },
  { title: "commented-out assignment", ext: "#ID=debian\nID=flatcar\nSYSEXT_LEVEL=1.0\n", expect: true },
  { title: "duplicate key, last wins", ext: "ID=debian\nID=flatcar\nSYSEXT_LEVEL=1.0\n", expect: true },
  { title: "duplicate key, last loses", ext: "ID=flatcar\nSYSEXT_LEVEL=1.0\nID=debian\n", expect: false },
  { title: "line continuation", ext: "ID=flat\\\ncar\nSYSEXT_LEVEL=1.0\n", expect: true },
  { title: "newline inside double quotes", ext: 'ID="_any\n"\n', expect: false },
  { title: "CRLF line endings", ext: "ID=flatcar\r\nSYSEXT_LEVEL=1.0\r\n", expect: true },
  { title: "no final newline", ext: "ID=_any", expect: true },
  { title: "unterminated quote at end of file", ext: 'ARCHITECTURE=x86-64\nID="_any', expect: true },
  { title: "unterminated quote swallows newline", ext: 'ID="_any\n', expect: false },
  { title: "line without =", ext: "garbage line\nID=_any\n", expect: true },
  { title: "only comments", ext: "# nothing here\n", expect: false },
  { title: "empty release file", ext: "", expect: false },
  {
    title: "comment ending in backslash",
    ext: "ID=_any\n# see below \\\nARCHITECTURE=arm64\n",
    expect: false,
    differs252: "systemd 252 continues a comment after a trailing backslash; >= 254 (and we) do not",
  },
  { title: "value not UTF-8", ext: null, extBytes: Buffer.from("ID=_any\nVERSION_ID=\xe9\n", "latin1"), expect: false },
  {
    title: "comment not UTF-8",
    ext: null,
    extBytes: Buffer.from("# caf\xe9\nID=_any\n", "latin1"),
    expect: false,
    differs252: "systemd only refuses invalid UTF-8 in keys and values; we refuse the whole file (stricter)",
  },
  // bytes systemd does not skip: a byte-order mark is part of the first key, a NUL voids the file
  { title: "byte-order mark before ID", ext: "\uFEFFID=_any\n", expect: false },
  { title: "byte-order mark before a comment line", ext: "\uFEFF# c\nID=_any\n", expect: true },
  { title: "NUL after the last line", ext: null, extBytes: Buffer.from("ID=_any\n\0"), expect: false },
  { title: "NUL in a comment", ext: null, extBytes: Buffer.from("ID=_any\n# a\0b\n"), expect: false },
  // release file presence and names
  { title: "missing release file", ext: null, expect: false },
  { title: "release file for another name", ext: any, releaseFile: "extension-release.kata", expect: false },
  {
    title: "versioned image name, release file for the short name",
    ext: any,
    image: "kata-containers-3.32.0-x86-64",
    releaseFile: "extension-release.kata-containers",
    expect: false,
  },
  {
    title: "versioned image name with its own release file",
    ext: any,
    image: "kata-containers-3.32.0-x86-64",
    expect: true,
  },
  // which release file 252 reads, and what an image may ship (admission's whole verdict)
  {
    title: "only extension-release.<other>, xattr strict=false",
    ext: null,
    files: { [`${RELEASE_D}/extension-release.foo`]: { content: any, mode: 0o644, xattrs: STRICT_FALSE } },
    whole: true,
    expect: true,
  },
  {
    title: "strict=false spelled No",
    ext: null,
    files: {
      [`${RELEASE_D}/extension-release.foo`]: {
        content: any,
        mode: 0o644,
        xattrs: { "user.extension-release.strict": "No" },
      },
    },
    whole: true,
    expect: true,
  },
  {
    title: "strict=false file, its content for another architecture",
    ext: null,
    files: {
      [`${RELEASE_D}/extension-release.foo`]: {
        content: "ID=_any\nARCHITECTURE=arm64\n",
        mode: 0o644,
        xattrs: STRICT_FALSE,
      },
    },
    whole: true,
    expect: false,
  },
  {
    title: "extension-release.<other> with strict=true",
    ext: null,
    files: {
      [`${RELEASE_D}/extension-release.foo`]: {
        content: any,
        mode: 0o644,
        xattrs: { "user.extension-release.strict": "true" },
      },
    },
    whole: true,
    expect: false,
  },
  {
    title: "two strict=false files: 252 refuses to choose",
    ext: null,
    files: {
      [`${RELEASE_D}/extension-release.foo`]: { content: any, mode: 0o644, xattrs: STRICT_FALSE },
      [`${RELEASE_D}/extension-release.bar`]: { content: any, mode: 0o644, xattrs: STRICT_FALSE },
    },
    whole: true,
    expect: false,
  },
  {
    title: "strict=false only on a symlink's target: not taken",
    ext: null,
    files: {
      "usr/share/rel/foo": { content: any, mode: 0o644, xattrs: STRICT_FALSE },
      [`${RELEASE_D}/extension-release.foo`]: { symlink: "../../share/rel/foo" },
    },
    whole: true,
    expect: false,
  },
  {
    title: "own name and a strict=false other: its own is read",
    ext: "ID=_any\nARCHITECTURE=arm64\n",
    files: { [`${RELEASE_D}/extension-release.foo`]: { content: any, mode: 0o644, xattrs: STRICT_FALSE } },
    whole: true,
    expect: false,
  },
  {
    title: "release file a relative symlink",
    ext: null,
    files: {
      "usr/share/rel/kata": { content: any, mode: 0o644 },
      [`${RELEASE_D}/extension-release.kata-containers`]: { symlink: "../../share/rel/kata" },
    },
    whole: true,
    expect: true,
  },
  {
    title: "release file an absolute symlink, resolved inside the image",
    ext: null,
    files: {
      "usr/share/rel/kata": { content: any, mode: 0o644 },
      [`${RELEASE_D}/extension-release.kata-containers`]: { symlink: "/usr/share/rel/kata" },
    },
    whole: true,
    expect: true,
  },
  {
    title: "release file a symlink leading nowhere",
    ext: null,
    files: { [`${RELEASE_D}/extension-release.kata-containers`]: { symlink: "../../share/rel/missing" } },
    whole: true,
    expect: false,
  },
  {
    title: "image ships /usr/lib/os-release",
    ext: any,
    files: { "usr/lib/os-release": "ID=evil\n" },
    whole: true,
    expect: false,
  },
  {
    title: "image ships a device node",
    ext: any,
    files: { "usr/lib/kata-differential/null": { device: "c", major: 1, minor: 3, mode: 0o666 } },
    whole: true,
    expect: false,
    differs252: "252 merges a device node usable by anyone (no nodev); we refuse the image",
  },
  {
    title: "image ships a setuid file",
    ext: any,
    files: { "usr/bin/kata-differential-suid": { content: "#!/bin/sh\n", mode: 0o4755 } },
    whole: true,
    expect: false,
    differs252: "252 merges a setuid binary with its privilege (no nosuid); we refuse the image",
  },
  {
    title: "image ships a setgid file",
    ext: any,
    files: { "usr/bin/kata-differential-sgid": { content: "#!/bin/sh\n", mode: 0o2755 } },
    whole: true,
    expect: false,
    differs252: "252 merges a setgid binary with its privilege (no nosuid); we refuse the image",
  },
  {
    title: "image ships a file with capabilities (security.capability)",
    ext: any,
    files: { "usr/bin/kata-differential-caps": { content: "#!/bin/sh\n", mode: 0o755, xattrs: CAP_SYS_ADMIN } },
    whole: true,
    expect: false,
    differs252: "252 merges a file with its capabilities (no nosuid); we refuse the image",
  },
  // host variations
  {
    title: "host without level: level alone is not enough",
    host: FLATCAR_NO_LEVEL,
    ext: "ID=flatcar\nSYSEXT_LEVEL=1.0\n",
    expect: false,
  },
  {
    title: "host without level: VERSION_ID match",
    host: FLATCAR_NO_LEVEL,
    ext: "ID=flatcar\nVERSION_ID=4593.2.5\n",
    expect: true,
  },
  {
    title: "host without VERSION_ID, extension without level",
    host: FLATCAR_NO_VERSION,
    ext: "ID=flatcar\n",
    expect: true,
  },
  {
    title: "host without VERSION_ID, level mismatch",
    host: FLATCAR_NO_VERSION,
    ext: "ID=flatcar\nSYSEXT_LEVEL=2\n",
    expect: false,
  },
  { title: "rolling host, ID match", host: ROLLING, ext: "ID=arch\n", expect: true },
  { title: "rolling host, extension pins VERSION_ID", host: ROLLING, ext: "ID=arch\nVERSION_ID=1\n", expect: true },
  { title: "host without ID", host: "VERSION_ID=4593.2.5\n", ext: any, expect: false },
  { title: "host ID= empty", host: "ID=\nVERSION_ID=1\n", ext: any, expect: false },
  {
    title: "host fields quoted",
    host: 'ID="flatcar"\nVERSION_ID=\'4593.2.5\'\nSYSEXT_LEVEL="1.0"\n',
    ext: "ID=flatcar\nSYSEXT_LEVEL=1.0\n",
    expect: true,
  },
  {
    title: "host duplicate ID, last wins",
    host: `ID=debian\n${FLATCAR}`,
    ext: "ID=flatcar\nSYSEXT_LEVEL=1.0\n",
    expect: true,
  },
  {
    title: "host /etc/os-release wins over /usr/lib",
    etcHost: "ID=debian\nVERSION_ID=12\n",
    ext: "ID=flatcar\nSYSEXT_LEVEL=1.0\n",
    expect: false,
  },
  { title: "host byte-order mark before ID", host: `\uFEFF${FLATCAR}`, ext: any, expect: false },
  { title: "host NUL after the last line", hostBytes: Buffer.from(`${FLATCAR}\0`), ext: any, expect: false },
  // Debian's own /usr/lib/os-release (this machine's) says ID=debian: a link followed out of the root would find it.
  {
    title: "host /etc/os-release absolute symlink resolves inside the root",
    etcLink: "/usr/lib/os-release",
    ext: "ID=flatcar\nSYSEXT_LEVEL=1.0\n",
    expect: true,
  },
  {
    title: "host /etc/os-release symlink with '..' stops at the root",
    etcLink: "../../../../../usr/lib/os-release",
    ext: "ID=flatcar\nSYSEXT_LEVEL=1.0\n",
    expect: true,
  },
  {
    title: "host /etc/os-release dangling symlink falls back to /usr/lib",
    etcLink: "/usr/lib/os-release.missing",
    ext: "ID=flatcar\nSYSEXT_LEVEL=1.0\n",
    expect: true,
  },
  {
    title: "host VERSION_ID= empty, level set",
    host: "ID=flatcar\nVERSION_ID=\nSYSEXT_LEVEL=1.0\n",
    ext: "ID=flatcar\n",
    expect: true,
  },
];

interface Built {
  c: Case;
  dirRoot: string;
  rawRoot: string;
}

const noSysext = skipWithout(
  process.getuid?.() !== 0
    ? "merging in a mount namespace needs root"
    : unless(
        existsSync("/usr/bin/systemd-sysext") || existsSync("/bin/systemd-sysext"),
        "systemd-sysext is not installed (Debian package systemd)",
      ),
  "the systemd-sysext differential test",
);

// One namespace for all roots: for each, a fresh /run, R bound on itself and shared, merge, look for the
// marker, unmerge. Roots arrive as positional parameters, so nothing is interpolated into the script.
const MERGE_ALL = `
for R in "$@"; do
  mount -t tmpfs tmpfs /run
  mount --bind "$R" "$R" && mount --make-shared "$R"
  out=$(systemd-sysext merge --root="$R" 2>&1); rc=$?
  if [ -e "$R/${MARKER}" ]; then m=merged; else m=skipped; fi
  systemd-sysext unmerge --root="$R" >/dev/null 2>&1
  printf '%s\\t%s\\t%s\\t%s\\n' "$R" "$m" "$rc" "$(printf '%s' "$out" | tr '\\n\\t' '  ')"
done`;

describe.skipIf(noSysext)("compatible() against the real systemd-sysext", () => {
  let work = "";
  const built: Built[] = [];
  const systemd = new Map<string, { merged: boolean; log: string }>();

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "kata-sysext-diff-"));
    CASES.forEach((c, index) => {
      const image = c.image ?? "kata-containers";
      const spec = {
        name: image,
        version: "3.32.0",
        extensionRelease: c.extBytes === undefined ? c.ext : null,
        ...(c.releaseFile === undefined ? {} : { releaseFileName: c.releaseFile }),
        files: {
          [MARKER]: `${index}\n`,
          ...(c.extBytes === undefined ? {} : { [extensionReleasePath(image)]: { content: c.extBytes, mode: 0o644 } }),
          ...c.files,
        },
      };
      const dirRoot = join(work, `${index}-dir`);
      const rawRoot = join(work, `${index}-raw`);
      for (const root of [dirRoot, rawRoot]) writeHost(root, c);
      buildTree(spec, join(dirRoot, "var/lib/extensions", image));
      buildImage(spec, join(rawRoot, "etc/extensions", `${image}.raw`));
      built.push({ c, dirRoot, rawRoot });
    });
    // Two namespaces side by side (the machines have two cores); each merge takes about 0.1 s.
    const roots = built.flatMap((b) => [b.dirRoot, b.rawRoot]);
    const halves = [roots.filter((_, i) => i % 2 === 0), roots.filter((_, i) => i % 2 === 1)];
    const outputs = await Promise.all(
      halves.map((part) =>
        run("unshare", ["-m", "--propagation", "private", "sh", "-c", MERGE_ALL, "sh", ...part], {
          timeoutMs: 120_000,
        }),
      ),
    );
    for (const line of outputs.flatMap((o) => o.stdout.split("\n")).filter(Boolean)) {
      const [root = "", merged, rc, log = ""] = line.split("\t");
      systemd.set(root, { merged: merged === "merged", log: `exit ${rc}: ${log}` });
    }
  }, 180_000);

  afterAll(() => {
    if (work !== "") rmSync(work, { recursive: true, force: true });
  });

  it(`has a corpus of at least 40 cases (${CASES.length})`, () => {
    expect(CASES.length).toBeGreaterThanOrEqual(40);
    expect(CASES.some((c) => c.expect)).toBe(true);
    expect(CASES.some((c) => !c.expect)).toBe(true);
  });

  it.each(CASES.map((c, i) => [i, c.title] as const))("case %i: %s", async (index) => {
    const b = built[index];
    if (b === undefined) throw new Error(`case ${index} was not built`);
    const { c } = b;
    const image = c.image ?? "kata-containers";
    if (c.whole === true) {
      const verdict = await admissionVerdict(b.rawRoot, image);
      expect(verdict.admitted, verdict.reasons.join("; ")).toBe(c.expect);
      for (const root of [b.dirRoot, b.rawRoot]) {
        const seen = systemd.get(root);
        expect(seen, `systemd-sysext did not report on ${root}`).toBeDefined();
        const want = c.differs252 === undefined ? verdict.admitted : !verdict.admitted;
        expect(seen?.merged, `${root}: systemd-sysext ${seen?.log}; ours: ${verdict.reasons.join("; ")}`).toBe(want);
      }
      return;
    }
    // Our side reads what systemd reads: the host release under the root, the release file for the image name.
    // A host os-release we refuse to read merges nothing, as systemd-sysext merges nothing.
    const host = await readHostReleaseUnder(b.dirRoot).catch(refused);
    const ext = await readReleaseOrNull(join(b.dirRoot, "var/lib/extensions", image, extensionReleasePath(image)));
    const decide = (e: ExtensionRelease | null): CompatDecision =>
      host instanceof KataError
        ? { compatible: false, reasons: [host.message] }
        : compatible(host, e, { name: image, arch: hostArchitecture() });
    const decision = decide(ext);
    expect(decision.reasons.length).toBeGreaterThan(0);
    expect(decision.compatible, decision.reasons.join("; ")).toBe(c.expect);
    // Admission reads the .raw itself (inspectImage): it must judge the image as the file reader does.
    const inImage = await inspectedReleaseOrNull(join(b.rawRoot, "etc/extensions", `${image}.raw`), image);
    const fromImage = decide(inImage);
    expect(fromImage.compatible, `image: ${fromImage.reasons.join("; ")}`).toBe(decision.compatible);

    for (const root of [b.dirRoot, b.rawRoot]) {
      const seen = systemd.get(root);
      expect(seen, `systemd-sysext did not report on ${root}`).toBeDefined();
      const want = c.differs252 === undefined ? decision.compatible : !decision.compatible;
      expect(seen?.merged, `${root}: systemd-sysext ${seen?.log}; ours: ${decision.reasons.join("; ")}`).toBe(want);
    }
  });
});

function writeHost(root: string, c: Case): void {
  mkdirSync(join(root, "usr/lib"), { recursive: true });
  mkdirSync(join(root, "opt"), { recursive: true });
  writeFileSync(join(root, "usr/lib/os-release"), c.hostBytes ?? c.host ?? FLATCAR);
  if (c.etcHost !== undefined || c.etcLink !== undefined) mkdirSync(join(root, "etc"), { recursive: true });
  if (c.etcHost !== undefined) writeFileSync(join(root, "etc/os-release"), c.etcHost);
  if (c.etcLink !== undefined) symlinkSync(c.etcLink, join(root, "etc/os-release"));
}

/** Admission's whole verdict on the .raw under `root`: inspection, the payload's shape and compatibility. */
async function admissionVerdict(root: string, name: string): Promise<{ admitted: boolean; reasons: string[] }> {
  let contents: Awaited<ReturnType<typeof inspectImage>>;
  try {
    contents = await inspectImage(join(root, "etc/extensions", `${name}.raw`), name);
  } catch (err) {
    if (err instanceof KataError && err.code === "inspect-failed") return { admitted: false, reasons: [err.message] };
    throw err;
  }
  const problems = payloadProblems(contents, name);
  if (problems.length > 0) return { admitted: false, reasons: problems };
  const host = await readHostReleaseUnder(root);
  const release = contents.extensionRelease === null ? null : parseExtensionRelease(contents.extensionRelease);
  const decision = compatible(host, release, { name, arch: hostArchitecture() });
  return { admitted: decision.compatible, reasons: decision.reasons };
}

/** The release file as admission reads it out of the image; one it refuses counts as none, as above. */
async function inspectedReleaseOrNull(raw: string, name: string): Promise<ExtensionRelease | null> {
  try {
    const { extensionRelease } = await inspectImage(raw, name);
    return extensionRelease === null ? null : parseExtensionRelease(extensionRelease);
  } catch (err) {
    if (err instanceof KataError && err.code === "inspect-failed") return null;
    throw err;
  }
}

/** A missing, empty or undecodable release file is "no usable extension-release" to systemd-sysext. */
async function readReleaseOrNull(path: string): Promise<ExtensionRelease | null> {
  const ext = await readExtensionRelease(path).catch(refused);
  return ext instanceof KataError ? null : ext;
}

/** The reader's refusal of a release file, as a value; any other error is the test's. */
function refused(err: unknown): KataError {
  if (err instanceof KataError && (err.code === "release-unreadable" || err.code === "release-invalid")) return err;
  throw err;
}
