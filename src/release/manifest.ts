// SHA256SUMS as systemd-sysupdate's url-file sources publish it: one "<64 hex>  <file>" (text mode) or
// "<64 hex> *<file>" (binary mode) per line, as sha256sum prints it. Lines may end in CRLF, as `sha256sum -c`
// accepts them (a SHA256SUMS written or served from Windows tooling): one carriage return before the LF is not
// part of the line, and it cannot smuggle anything into a file name (a CR anywhere else is still refused there).
// Anything else in a line is rejected with its line number, and a rejected line never becomes a file name we act on.
import { KataError } from "../errors.ts";
import { fileNameProblem } from "./names.ts";

export interface ManifestEntry {
  file: string;
  /** Lower-case hex. */
  sha256: string;
  line: number;
}

export interface RejectedLine {
  line: number;
  message: string;
}

export interface Manifest {
  entries: ManifestEntry[];
  rejected: RejectedLine[];
}

const LINE = /^([0-9A-Fa-f]{64}) ([ *])(.*)$/;
const LOWER_HEX = /^[0-9a-f]*$/;
/** Larger than any real SHA256SUMS by far; a bigger document is refused as a whole rather than parsed. */
export const MAX_MANIFEST_CHARS = 16 * 1024 * 1024;

export function parseManifest(text: string): Manifest {
  if (text.length > MAX_MANIFEST_CHARS) {
    return { entries: [], rejected: [{ line: 0, message: `larger than ${MAX_MANIFEST_CHARS} characters; ignored` }] };
  }
  const rejected: RejectedLine[] = [];
  const byFile = new Map<string, ManifestEntry>();
  const conflicted = new Set<string>();
  const lines = text.split("\n");
  // A final newline leaves one empty string behind; it is not a line.
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();

  for (let index = 0; index < lines.length; index++) {
    const crlf = lines[index] ?? "";
    const raw = crlf.endsWith("\r") ? crlf.slice(0, -1) : crlf;
    const line = index + 1;
    const m = LINE.exec(raw);
    if (m === null) {
      if (raw === "") continue;
      rejected.push({ line, message: raw.trim() === "" ? "blank line with whitespace" : describe(raw) });
      continue;
    }
    const hex = m[1] ?? "";
    const file = m[3] ?? "";
    const problem = fileNameProblem(file);
    if (problem !== null) {
      rejected.push({ line, message: `file name ${JSON.stringify(clip(file))} ${problem}` });
      continue;
    }
    const sha256 = LOWER_HEX.test(hex) ? hex : hex.toLowerCase();
    const earlier = byFile.get(file);
    if (earlier === undefined) {
      byFile.set(file, { file, sha256, line });
    } else if (earlier.sha256 !== sha256) {
      // Two digests for one file: neither can be trusted, so the file is dropped.
      conflicted.add(file);
      rejected.push({ line, message: `${file} listed again with a different digest (first at line ${earlier.line})` });
    }
  }

  for (const file of conflicted) {
    const first = byFile.get(file);
    if (first !== undefined) rejected.push({ line: first.line, message: `${file} has conflicting digests; dropped` });
    byFile.delete(file);
  }
  rejected.sort((a, b) => a.line - b.line);
  return { entries: [...byFile.values()], rejected };
}

/**
 * How many lines were rejected and the first one's reason, for a failure they may have caused (a manifest whose
 * every line was refused offers nothing): "2 lines rejected, first line 1: …". Null when none was.
 */
export function summarizeRejected(rejected: readonly RejectedLine[]): string | null {
  const [first] = rejected;
  if (first === undefined) return null;
  if (first.line === 0) return first.message;
  const count = rejected.length === 1 ? "1 line rejected," : `${rejected.length} lines rejected, first`;
  return `${count} line ${first.line}: ${first.message}`;
}

/**
 * A SHA256SUMS of which not one line was read, though it had lines: not a SHA256SUMS at all, most often because
 * [source] url leads somewhere else (a web server's HTML page for a missing directory, a login portal). Null for a
 * document with entries, or an empty one (a publisher with nothing released yet).
 */
export function unusableManifest(manifest: Manifest, text: string, url: string): KataError | null {
  const summary = summarizeRejected(manifest.rejected);
  if (manifest.entries.length > 0 || summary === null) return null;
  return new KataError("manifest-invalid", `${url} is not a SHA256SUMS: no line of it is valid (${summary})`, {
    remedy: `check [source] url: what it serves is ${looks(text)}; if the url is right, the publisher must fix its SHA256SUMS`,
  });
}

/** How a document begins, for a message: an HTML page said as such, otherwise its first characters, quoted. */
function looks(text: string): string {
  const head = text.trimStart().slice(0, 200);
  const html = /^(<!doctype html|<html|<head|<body)/i.test(head) || /<html[\s>]/i.test(head);
  const first = JSON.stringify(clip(head.slice(0, 60).replace(/\s+/g, " ")));
  return html ? `an HTML page (it begins ${first})` : `${text.length} characters beginning ${first}`;
}

function describe(raw: string): string {
  const first = raw.split(/\s/, 1)[0] ?? "";
  if (!/^[0-9A-Fa-f]{64}$/.test(first)) return `expected 64 hex digits, got ${JSON.stringify(clip(first))}`;
  return 'expected "<sha256>  <file>" or "<sha256> *<file>"';
}

const clip = (s: string): string => (s.length > 80 ? `${s.slice(0, 77)}...` : s);
