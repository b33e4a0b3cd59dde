// SHA256SUMS as systemd-sysupdate's url-file sources publish it: one "<64 hex>  <file>" (text mode) or
// "<64 hex> *<file>" (binary mode) per line, as sha256sum prints it. Anything else in a line is rejected with
// its line number, and a rejected line never becomes a file name we act on.
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
    const raw = lines[index] ?? "";
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

function describe(raw: string): string {
  if (raw.endsWith("\r")) return "ends in CRLF, but SHA256SUMS must use LF line ends";
  const first = raw.split(/\s/, 1)[0] ?? "";
  if (!/^[0-9A-Fa-f]{64}$/.test(first)) return `expected 64 hex digits, got ${JSON.stringify(clip(first))}`;
  return 'expected "<sha256>  <file>" or "<sha256> *<file>"';
}

const clip = (s: string): string => (s.length > 80 ? `${s.slice(0, 77)}...` : s);
