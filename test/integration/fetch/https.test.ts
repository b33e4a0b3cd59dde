// httpGet over TLS against a real server on 127.0.0.1 whose certificate comes from a CA the test makes with
// openssl: which redirects it follows, and how a rejected certificate fails.
import { rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { createServer as createTlsServer, type Server as TlsServer } from "node:tls";
import { afterAll, beforeAll, expect, test } from "vitest";
import { FetchError, type GetOptions, httpGet, httpGetBuffer } from "../../../src/fetch/http.ts";
import { makeCertificate, type TestCertificate, tempDir } from "./support.ts";

let dir: string;
let certificate: TestCertificate;
let tlsServer: TlsServer;
let plainServer: Server;
let httpsBase: string;
/** Request lines the plain http server saw. */
const plainRequests: string[] = [];

const listen = (server: Server): Promise<number> =>
  new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      resolve(typeof address === "object" && address !== null ? address.port : 0);
    }),
  );

beforeAll(async () => {
  dir = tempDir("https");
  certificate = makeCertificate(dir);
  plainServer = createServer((socket) => {
    socket.on("error", () => undefined);
    socket.once("data", (data: Buffer) => {
      plainRequests.push(data.toString("latin1").split("\r\n")[0] ?? "");
      socket.end("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ntampered");
    });
  });
  const plainPort = await listen(plainServer);
  tlsServer = createTlsServer({ key: certificate.key, cert: certificate.cert }, (socket) => {
    socket.on("error", () => undefined);
    socket.once("data", (data: Buffer) => {
      const path = data.toString("latin1").split(" ")[1];
      const redirects: Record<string, string> = {
        "/to-http": `http://127.0.0.1:${plainPort}/file`,
        "/to-https": "/file",
      };
      const location = path === undefined ? undefined : redirects[path];
      socket.end(
        location === undefined
          ? "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ngenuine"
          : `HTTP/1.1 302 Found\r\nLocation: ${location}\r\nContent-Length: 0\r\n\r\n`,
      );
    });
  });
  tlsServer.on("tlsClientError", () => undefined);
  httpsBase = `https://localhost:${await listen(tlsServer)}`;
});

afterAll(async () => {
  await new Promise((r) => tlsServer.close(() => r(undefined)));
  await new Promise((r) => plainServer.close(() => r(undefined)));
  rmSync(dir, { recursive: true, force: true });
});

const options = (): GetOptions => ({ connectTimeoutMs: 2000, idleTimeoutMs: 2000, maxBytes: 1024, ca: certificate.ca });

test("a redirect from https to another https path is followed", async () => {
  expect((await httpGetBuffer(`${httpsBase}/to-https`, options())).toString()).toBe("genuine");
});

test("a redirect from https to http is refused before anything is sent over http", async () => {
  const err = await httpGet(`${httpsBase}/to-http`, options()).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FetchError);
  expect(err).toMatchObject({ kind: "redirect", code: "fetch-failed", retryable: false });
  expect((err as FetchError).message).toMatch(/refused a downgrade from https to http/);
  expect(plainRequests).toEqual([]);
});

test("a certificate nobody trusts fails at once with tls, not retryable, saying what to check", async () => {
  const { ca: _trusted, ...untrusting } = options();
  const err = await httpGet(`${httpsBase}/file`, untrusting).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FetchError);
  expect(err).toMatchObject({ kind: "tls", code: "fetch-failed", retryable: false });
  expect((err as FetchError).remedy).toMatch(/certificate is not trusted.*\[source\] url.*CA.*clock/);
});
