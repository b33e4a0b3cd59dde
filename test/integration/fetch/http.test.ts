// The connect timeout, which the release server cannot provoke: a real listener whose accept queue is full, so
// the kernel drops our SYN and the connection never completes.
import { type ChildProcess, spawn } from "node:child_process";
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, expect, test } from "vitest";
import { FetchError, httpGet } from "../../../src/fetch/http.ts";

// python3 because node accepts every connection itself; this listener never calls accept().
const LISTENER = `import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(0)
print(s.getsockname()[1], flush=True)
time.sleep(120)`;

let listener: ChildProcess;
let port: number;
const fillers: Socket[] = [];

beforeAll(async () => {
  listener = spawn("python3", ["-c", LISTENER], { stdio: ["ignore", "pipe", "inherit"] });
  port = await new Promise<number>((resolve) =>
    listener.stdout?.once("data", (d: Buffer) => resolve(Number(String(d).trim()))),
  );
  for (let i = 0; i < 4; i++) {
    const socket = connect(port, "127.0.0.1");
    socket.on("error", () => undefined);
    fillers.push(socket);
  }
  await new Promise((r) => setTimeout(r, 200));
});

afterAll(() => {
  for (const socket of fillers) socket.destroy();
  listener.kill("SIGKILL");
});

test("a connection that never completes fails with fetch-timeout after the connect timeout", async () => {
  const err = await httpGet(`http://127.0.0.1:${port}/kata-containers/SHA256SUMS`, {
    connectTimeoutMs: 300,
    idleTimeoutMs: 10_000,
    maxBytes: 1024,
  }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FetchError);
  expect(err).toMatchObject({ code: "fetch-timeout", kind: "timeout", retryable: true });
  expect((err as FetchError).message).toContain("connect timed out after 300 ms");
});
