// Socket reads arrive as fresh 64 KiB buffers that become garbage as soon as they are hashed and written. V8
// collects them only when its external-memory heuristic fires (~64 MiB later), so a 512 MiB download would
// hold tens of MiB of dead buffers. A minor GC every few MiB frees them (measured: peak RSS +70 MiB -> ~1 MiB,
// throughput unchanged); the daemon's memory budget (issue 4: +32 MiB while installing) needs that.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

type Gc = (options?: { type?: "minor" | "major" }) => void;

let gc: Gc | null | undefined;

function collector(): Gc | null {
  if (gc !== undefined) return gc;
  const exposed = (globalThis as { gc?: Gc }).gc;
  if (typeof exposed === "function") {
    gc = exposed;
    return gc;
  }
  try {
    // Exposes gc() in a new context only; the flag does not change how anything else runs.
    setFlagsFromString("--expose-gc");
    const fresh: unknown = runInNewContext("gc");
    gc = typeof fresh === "function" ? (fresh as Gc) : null;
  } catch {
    gc = null;
  }
  return gc;
}

/** Returns a function to call with each chunk's length; every `everyBytes` it runs a minor GC. */
export function reclaimer(everyBytes = 16 << 20): (bytes: number) => void {
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since < everyBytes) return;
    since = 0;
    collector()?.({ type: "minor" });
  };
}
