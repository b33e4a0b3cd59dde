// No credential written into a URL (`https://user:password@host/`, or a token as the user) reaches a log line,
// /status, /metrics or the CLI: every error message and every log record passes through here. The configuration
// refuses such URLs; this also covers one that arrives some other way (a redirect's Location, a server's text).

const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@"'<>[\]]+@/gi;

/** `text` with the user and password of every URL in it replaced by `***`. */
export function redactCredentials(text: string): string {
  return text.includes("@") ? text.replace(USERINFO, "$1***@") : text;
}
