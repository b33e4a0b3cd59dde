// Loopback ports for tests that start a real daemon: the API binds 127.0.0.1 and [::1] on the same port, and
// containers share this machine's network, so a port must be free on both.
import { createServer } from "node:net";

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await listenOnce("127.0.0.1", 0);
    if ((await listenOnce("::1", port).catch(() => 0)) === port) return port;
  }
  throw new Error("no loopback port free on both 127.0.0.1 and ::1");
}

function listenOnce(host: string, port: number): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(port, host, () => {
      const address = server.address();
      server.close(() => done(typeof address === "object" && address !== null ? address.port : 0));
    });
  });
}
