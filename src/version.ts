import { readFileSync } from "node:fs";

// The daemon's own version, from package.json (bundled builds inline it).
export const DAEMON_VERSION: string = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;
