// `[source] sysupdate = "PATH"`: the source read from a systemd-sysupdate transfer file (sysupdate.d(5)), as the
// sysext-bakery's Butane writes /etc/sysupdate.<name>.d/<name>.conf. What kata-sysextd honours: [Source] Type=url-file,
// Path= (the directory holding SHA256SUMS and the images) and MatchPattern= (`<name>-@v-%a.raw`), and [Transfer]
// Verify= (yes: SHA256SUMS.gpg must verify against [source] keyring). [Target] describes systemd-sysupdate's own
// store and link; kata-sysextd keeps its store, so the section is accepted and not used (the caller says so once).
// Anything else is a configuration error naming the file, the line and the key: silently ignoring it would fetch
// something other than what the operator's transfer file says.
import { KataError } from "../errors.ts";
import { extensionNameProblem } from "../release/names.ts";
import type { Verify } from "./schema.ts";

export interface TransferSource {
  /** [Source] Path=, ending in "/". */
  path: string;
  /** The extension name MatchPattern= spells before "-@v-%a.raw". */
  name: string;
  verify: Verify;
  /** Said once in the journal: what the file holds that is accepted and not used. */
  notes: string[];
}

interface Line {
  line: number;
  section: string;
  key: string;
  value: string;
}

/** systemd's parse_boolean(). */
const TRUE = new Set(["1", "yes", "y", "true", "t", "on"]);
const FALSE = new Set(["0", "no", "n", "false", "f", "off"]);

/** Reads the transfer file's text; `file` is how it is named in messages. */
export function parseTransfer(text: string, file: string): TransferSource {
  const lines = assignments(text, file);
  const fail = (at: Line | number, message: string, remedy: string): never => {
    const where = typeof at === "number" ? `${file}:${at}` : `${file}:${at.line}: [${at.section}] ${at.key}=`;
    throw new KataError("config-invalid", `${where}: ${message}`, { remedy });
  };
  const cannot = (at: Line, why: string): never =>
    fail(
      at,
      `kata-sysextd cannot honour this: ${why}`,
      "remove the key from the transfer file, or configure [source] url, name and verify in config.toml instead of sysupdate",
    );

  let type: Line | undefined;
  let path: Line | undefined;
  let verify: Line | undefined;
  let patterns: { at: Line; values: string[] } | undefined;
  const target: string[] = [];
  for (const l of lines) {
    if (l.section === "Target") {
      target.push(`${l.key}=${l.value}`);
      continue;
    }
    if (l.section === "Transfer" && l.key === "Verify") verify = l;
    else if (l.section === "Source" && l.key === "Type") type = l;
    else if (l.section === "Source" && l.key === "Path") path = l;
    else if (l.section === "Source" && l.key === "MatchPattern") {
      // Several patterns accumulate; an empty assignment resets the list (sysupdate.d(5)).
      const values = l.value.split(/\s+/).filter((v) => v !== "");
      patterns = values.length === 0 ? undefined : { at: l, values: [...(patterns?.values ?? []), ...values] };
    } else if (l.section === "Transfer" || l.section === "Source") {
      cannot(l, `kata-sysextd reads only [Transfer] Verify= and [Source] Type=, Path=, MatchPattern=`);
    } else {
      fail(l.line, `unknown section [${l.section}]`, "a transfer file has [Transfer], [Source] and [Target] sections");
    }
  }

  if (type === undefined) return fail(1, "[Source] has no Type=", 'add "Type=url-file" to [Source]');
  if (type.value !== "url-file") cannot(type, `only url-file sources (HTTP/HTTPS with SHA256SUMS) are fetched`);
  if (path === undefined)
    return fail(type.line, "[Source] has no Path=", "add the URL of the directory with SHA256SUMS");
  let url: URL;
  try {
    url = new URL(path.value);
  } catch {
    return fail(
      path,
      `"${path.value}" is not a URL`,
      "Path= must be the http(s) URL of the directory holding SHA256SUMS",
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    fail(
      path,
      `"${path.value}" is not an http(s) URL`,
      "Path= must be the http(s) URL of the directory holding SHA256SUMS",
    );
  }
  if (url.username !== "" || url.password !== "") {
    fail(path, "the URL carries credentials", "publish the images where no password in a file is needed");
  }
  if (url.search !== "" || url.hash !== "") {
    fail(
      path,
      `the URL has a ${url.search !== "" ? "query" : "fragment"}, which no file's URL would keep (SHA256SUMS and the images are resolved against Path=)`,
      "Path= must be the plain http(s) URL of the directory holding SHA256SUMS",
    );
  }
  if (patterns === undefined)
    return fail(path.line, "[Source] has no MatchPattern=", 'add "MatchPattern=<name>-@v-%a.raw"');
  if (patterns.values.length > 1) {
    cannot(patterns.at, `several patterns (${patterns.values.join(" ")}); kata-sysextd matches one`);
  }
  const name = patternName(patterns.values[0] ?? "", patterns.at, cannot);

  let verifies = true; // sysupdate.d(5): Verify= defaults to yes
  if (verify !== undefined) {
    const v = verify.value.toLowerCase();
    if (TRUE.has(v)) verifies = true;
    else if (FALSE.has(v)) verifies = false;
    else fail(verify, `"${verify.value}" is not a boolean`, "Verify= takes yes or no");
  }
  const notes =
    target.length === 0
      ? []
      : [
          `${file}: [Target] (${target.join(", ")}) is not used: kata-sysextd keeps its own verified store under /var/lib/kata-sysextd/images and links /etc/extensions/${name}.raw itself`,
        ];
  return {
    path: path.value.endsWith("/") ? path.value : `${path.value}/`,
    name,
    verify: verifies ? "signature" : "checksum",
    notes,
  };
}

/**
 * The extension name of a MatchPattern= of the form `<name>-@v-%a.raw`: the form kata-sysextd stores images
 * under (docs/interface.md: <name>-<version>-<arch>.raw). `@@` and `%%` are a literal @ and %; any other wildcard (@u, @t,
 * …) or specifier (%w, %m, …) cannot be honoured.
 */
function patternName(pattern: string, at: Line, cannot: (at: Line, why: string) => never): string {
  let literal = "";
  const parts: string[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    const next = pattern[i + 1];
    if ((c === "@" || c === "%") && next === c) {
      literal += c;
      i++;
    } else if ((c === "@" && next === "v") || (c === "%" && next === "a")) {
      parts.push(literal, `${c}${next}`);
      literal = "";
      i++;
    } else if (c === "@" || c === "%") {
      cannot(at, `"${c}${next ?? ""}" in MatchPattern=; only @v (version) and %a (architecture) are understood`);
    } else {
      literal += c;
    }
  }
  parts.push(literal);
  const [prefix = "", v, dash, a, suffix] = parts;
  if (parts.length !== 5 || v !== "@v" || dash !== "-" || a !== "%a" || suffix !== ".raw" || !prefix.endsWith("-")) {
    return cannot(
      at,
      `MatchPattern=${pattern} is not of the form <name>-@v-%a.raw, the names kata-sysextd stores images under`,
    );
  }
  const name = prefix.slice(0, -1);
  const problem = extensionNameProblem(name);
  if (problem !== null) cannot(at, `the extension name "${name}" in MatchPattern= ${problem}`);
  return name;
}

/** The KEY=VALUE lines with their section and line number (systemd's unit-file syntax, as sysupdate reads it). */
function assignments(text: string, file: string): Line[] {
  const out: Line[] = [];
  let section = "";
  const raw = text.split("\n");
  for (let i = 0; i < raw.length; i++) {
    const number = i + 1;
    let line = (raw[i] ?? "").trim();
    // A trailing backslash continues the line.
    while (line.endsWith("\\") && i + 1 < raw.length) {
      line = `${line.slice(0, -1)} ${(raw[++i] ?? "").trim()}`;
    }
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header !== null) {
      section = header[1] ?? "";
      continue;
    }
    const eq = line.indexOf("=");
    if (eq <= 0) {
      throw new KataError("config-invalid", `${file}:${number}: "${line}" is not a KEY=VALUE line`, {
        remedy: "fix the transfer file (sysupdate.d(5))",
      });
    }
    if (section === "") {
      throw new KataError("config-invalid", `${file}:${number}: ${line.slice(0, eq).trim()}= is outside any section`, {
        remedy: "a transfer file has [Transfer], [Source] and [Target] sections",
      });
    }
    out.push({ line: number, section, key: line.slice(0, eq).trim(), value: line.slice(eq + 1).trim() });
  }
  return out;
}
