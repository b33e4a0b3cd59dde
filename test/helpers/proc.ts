// Processes as /proc shows them, for tests that look for or signal processes they did not spawn themselves.
//
// Two PID numberings meet here. /proc numbers processes in the PID namespace it was mounted for; Node (child.pid,
// process.kill) uses this process's own. They differ when the tests run in a PID namespace of their own over the
// host's /proc, as CI does. A process's NSpid line lists its PID at every level, /proc's level first.
import { readdirSync, readFileSync } from "node:fs";

export function readProc(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return ""; // the process went away while we looked
  }
}

/** Every PID /proc lists, in /proc's numbering. */
export function processes(): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number);
}

export function nspids(pid: number | "self"): number[] {
  const line = /^NSpid:\s+(.*)$/m.exec(readProc(`/proc/${pid}/status`))?.[1]?.trim();
  return line ? line.split(/\s+/).map(Number) : [];
}

/** This process's level in NSpid lists read from /proc: 0 when /proc is our own, -1 when we are not in it. */
export const OWN_LEVEL = nspids("self").length - 1;

/** Our PID for a /proc PID; 0 when that process is gone or outside our namespace. */
export function ownPid(procPid: number): number {
  if (procPid <= 0) return 0;
  return OWN_LEVEL === 0 ? procPid : (nspids(procPid)[OWN_LEVEL] ?? 0);
}

/** The /proc PID of a PID of ours (a child we spawned); 0 when it is gone. */
export function procPid(own: number): number {
  if (own <= 0 || OWN_LEVEL === 0) return own;
  return processes().find((pid) => nspids(pid)[OWN_LEVEL] === own) ?? 0;
}

/** Our PIDs of the processes whose argv[0] is `path`: ready for process.kill. */
export function runningAs(path: string): number[] {
  return processes()
    .filter((pid) => readProc(`/proc/${pid}/cmdline`).split("\0")[0] === path)
    .map(ownPid)
    .filter((pid) => pid > 0);
}

/** Our PIDs of the children of a PID of ours (e.g. the process `unshare --fork` started); empty when it is gone. */
export function childrenOf(own: number): number[] {
  const pid = procPid(own);
  if (pid <= 0) return [];
  return readProc(`/proc/${pid}/task/${pid}/children`)
    .trim()
    .split(/\s+/)
    .filter((p) => p !== "")
    .map((p) => ownPid(Number(p)))
    .filter((p) => p > 0);
}

/** Alive and not a zombie (a killed process may linger as one until its new parent reaps it); /proc's numbering. */
export function isRunning(pid: number): boolean {
  const stat = readProc(`/proc/${pid}/stat`);
  return pid > 0 && stat !== "" && stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}

/** Children, grandchildren and so on, nearest first, in /proc's numbering (`ancestor` too). */
export function descendantsOf(ancestor: number): number[] {
  const found: number[] = [];
  let generation = [ancestor];
  // Bounded: a process tree under script is a few levels deep; PID reuse cannot make a cycle within 8 steps matter.
  for (let depth = 0; depth < 8 && generation.length > 0; depth += 1) {
    generation = generation.flatMap(procChildrenOf);
    found.push(...generation);
  }
  return found;
}

/** Children of a PID in /proc's numbering, found by their PPid (no children file needed). */
export function procChildrenOf(parent: number): number[] {
  return processes().filter((pid) => {
    const stat = readProc(`/proc/${pid}/stat`);
    // Fields after the parenthesised command name: state, ppid, …
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === parent;
  });
}
