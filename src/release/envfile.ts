// Env files (os-release, extension-release) read the way systemd reads them: a character state machine with
// comments, single and double quotes, backslash escapes and no shell expansion. Mirroring systemd's own parser
// (src/basic/env-file.c) matters because a quoting oddity must mean to us exactly what it means to systemd-sysext.

export interface EnvFileProblem {
  line: number;
  message: string;
}

export interface EnvFile {
  /** Last assignment wins, as in systemd. A null-prototype object, so keys like "__proto__" are plain keys. */
  values: Record<string, string>;
  problems: EnvFileProblem[];
}

const WHITESPACE = " \t\n\r";
const NEWLINE = "\n\r";
const COMMENTS = "#;";
/** Characters a backslash unescapes inside double quotes; before any other character the backslash stays. */
const SHELL_NEED_ESCAPE = '"\\`$';
const VALID_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

type State =
  | "pre-key"
  | "key"
  | "pre-value"
  | "value"
  | "value-escape"
  | "single-quote"
  | "double-quote"
  | "double-quote-escape"
  | "comment"
  | "comment-escape";

/**
 * Parses env-file text. Never throws; lines systemd drops (no "=") are reported and dropped, oddities systemd
 * accepts (unterminated quotes, keys that are not variable names) are reported and kept as systemd keeps them.
 *
 * Follows systemd >= 254 for a comment ending in a backslash: the comment ends at the newline. systemd 252
 * treats the next line as part of the comment (see test/integration/release/sysext-differential.test.ts).
 */
export function parseEnvFile(text: string): EnvFile {
  const values: Record<string, string> = Object.create(null);
  const problems: EnvFileProblem[] = [];
  let state: State = "pre-key";
  let key = "";
  let value = "";
  // Index in `key`/`value` where trailing whitespace starts, or -1 (systemd's last_*_whitespace).
  let keyWhitespace = -1;
  let valueWhitespace = -1;
  let line = 1;
  let startLine = 1;

  const push = (): void => {
    const k = keyWhitespace >= 0 ? key.slice(0, keyWhitespace) : key;
    if (!VALID_NAME.test(k)) {
      const bom = k.startsWith("\uFEFF") ? " (it starts with a UTF-8 byte-order mark)" : "";
      problems.push({ line: startLine, message: `key ${JSON.stringify(k)} is not a valid variable name${bom}` });
    }
    values[k] = value;
    key = "";
    value = "";
  };
  const chompValue = (): void => {
    if (valueWhitespace >= 0) value = value.slice(0, valueWhitespace);
  };

  // systemd refuses a file with a NUL anywhere, so none of its assignments count (readers refuse it earlier).
  const nul = text.indexOf("\0");
  if (nul >= 0) {
    problems.push({ line: countLines(text, nul), message: "NUL character; systemd ignores the whole file" });
    return { values, problems };
  }

  for (let i = 0; i < text.length; i++) {
    const c = text.charAt(i);
    const isNewline = NEWLINE.includes(c);
    switch (state) {
      case "pre-key":
        if (COMMENTS.includes(c)) state = "comment";
        else if (!WHITESPACE.includes(c)) {
          state = "key";
          startLine = line;
          keyWhitespace = -1;
          key = c;
        }
        break;
      case "key":
        if (isNewline) {
          problems.push({ line: startLine, message: `no "=" in ${JSON.stringify(key.trim())}; line ignored` });
          state = "pre-key";
          key = "";
        } else if (c === "=") {
          state = "pre-value";
          valueWhitespace = -1;
        } else {
          if (!WHITESPACE.includes(c)) keyWhitespace = -1;
          else if (keyWhitespace < 0) keyWhitespace = key.length;
          key += c;
        }
        break;
      case "pre-value":
        if (isNewline) {
          state = "pre-key";
          push();
        } else if (c === "'") state = "single-quote";
        else if (c === '"') state = "double-quote";
        else if (c === "\\") state = "value-escape";
        else if (!WHITESPACE.includes(c)) {
          state = "value";
          value += c;
        }
        break;
      case "value":
        if (isNewline) {
          state = "pre-key";
          chompValue();
          push();
        } else if (c === "\\") {
          state = "value-escape";
          valueWhitespace = -1;
        } else {
          if (!WHITESPACE.includes(c)) valueWhitespace = -1;
          else if (valueWhitespace < 0) valueWhitespace = value.length;
          value += c;
        }
        break;
      case "value-escape":
        state = "value";
        // An escaped newline is a line continuation and is dropped.
        if (!isNewline) value += c;
        break;
      case "single-quote":
        if (c === "'") state = "pre-value";
        else value += c;
        break;
      case "double-quote":
        if (c === '"') state = "pre-value";
        else if (c === "\\") state = "double-quote-escape";
        else value += c;
        break;
      case "double-quote-escape":
        state = "double-quote";
        if (SHELL_NEED_ESCAPE.includes(c)) value += c;
        else if (c !== "\n") value += `\\${c}`;
        break;
      case "comment":
        if (c === "\\") state = "comment-escape";
        else if (isNewline) state = "pre-key";
        break;
      case "comment-escape":
        state = isNewline ? "pre-key" : "comment";
        break;
    }
    if (c === "\n") line++;
  }

  switch (state) {
    case "key":
      problems.push({ line: startLine, message: `no "=" in ${JSON.stringify(key.trim())}; line ignored` });
      break;
    case "single-quote":
    case "double-quote":
    case "double-quote-escape":
      problems.push({ line: startLine, message: "unterminated quote at end of file; value kept up to there" });
      push();
      break;
    case "value":
      chompValue();
      push();
      break;
    case "pre-value":
    case "value-escape":
      push();
      break;
    default:
      break;
  }
  return { values, problems };
}

function countLines(text: string, upTo: number): number {
  let n = 1;
  for (let i = 0; i < upTo; i++) if (text.charCodeAt(i) === 10) n++;
  return n;
}
