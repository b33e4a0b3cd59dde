// The idle benchmark's baseline: a bare fastify server with one route, on the same runtime and started the same
// way as the daemon (a node process running a JavaScript file: TypeScript would load Node's type stripper, some
// 20 MiB the daemon's bundle does not need). Prints its port, then serves until killed.
import Fastify from "fastify";

const app = Fastify({ logger: false });
app.get("/", async () => ({ hello: "world" }));
await app.listen({ host: "127.0.0.1", port: 0 });
const address = app.server.address();
process.stdout.write(`${typeof address === "object" && address !== null ? address.port : 0}\n`);
