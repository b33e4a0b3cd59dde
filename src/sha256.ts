// SHA-256, the one digest the project takes. node:crypto loads with the first digest, not with every module that
// may take one: loading it costs each command about 5 ms, and the boot step usually hashes nothing.
import type { Hash } from "node:crypto";

export function sha256(): Hash {
  return process.getBuiltinModule("node:crypto").createHash("sha256");
}

/** Hex SHA-256 of a string's UTF-8 bytes. */
export function sha256Hex(text: string): string {
  return sha256().update(text, "utf8").digest("hex");
}
