// A plain static HTTP server, nothing of ours in it: Python's `http.server` serving a directory on 127.0.0.1,
// as an operator's mirror of the sysext-bakery's release directory would (no rewrites, no Range support).
//
//   const server = await startStaticServer(dir);   // server.url ends in "/"
//   await server.close();
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";

export interface StaticServer {
  url: string;
  /** Request lines ("GET /path HTTP/1.1") the server logged so far. */
  requests(): string[];
  close(): Promise<void>;
}

export async function startStaticServer(dir: string): Promise<StaticServer> {
  const child: ChildProcess = spawn(
    "python3",
    ["-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", dir],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`python3 -m http.server did not start: ${stderr}`)), 10_000);
    const look = () => {
      const m = /port (\d+)/.exec(stdout);
      if (m === null) return;
      clearTimeout(timer);
      child.stdout?.off("data", look);
      resolve(Number(m[1]));
    };
    child.stdout?.on("data", look);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`python3 -m http.server exited ${code}: ${stderr}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}/`,
    requests: () => [...stderr.matchAll(/"(GET [^"]*)"/g)].map((m) => m[1] ?? ""),
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      await once(child, "exit");
    },
  };
}
