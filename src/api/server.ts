// The status API: a read-only listener on loopback TCP and the full API on the root-only unix socket. Two
// fastify instances share the route list; only the socket's instance gets the mutating routes, so "TCP is
// read-only" is a property of what is registered, not of a check that could be forgotten.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from "fastify";
import { KataError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { StatusSnapshot } from "../status.ts";
import { bindLoopback, bindSocket, closeServer } from "./listen.ts";
import type { Metrics } from "./metrics.ts";
import { openApiDocument, type Transport } from "./openapi.ts";
import { compileQueryValidator } from "./query.ts";
import { type ApiActions, errorBody, JSON_UTF8, type RouteSpec, routes } from "./routes.ts";
import { type ErrorBody, NO_QUERY } from "./schemas.ts";

export type { ApiActions } from "./routes.ts";
export type { ActionResult, VersionsResult } from "./schemas.ts";

export interface ApiOptions {
  /** Loopback address for the read-only TCP listener ("127.0.0.1:8720"); null serves the unix socket only. */
  listen: string | null;
  socketPath: string;
  snapshot: () => StatusSnapshot;
  metrics: Metrics;
  actions: ApiActions;
  log: Logger;
  /** How often a streamed refresh samples progress (default 250 ms). */
  progressIntervalMs?: number;
}

export interface ApiHandle {
  /** "127.0.0.1:8720", "[::1]:8720": what TCP actually bound (port 0 resolved). */
  tcpAddresses: string[];
  close(): Promise<void>;
}

/** Host headers a browser sends only when it really talks to this machine's loopback (DNS-rebinding guard). */
const LOOPBACK_HOST = /^(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?$/i;

const TCP_READ_ONLY: ErrorBody = {
  code: "method-not-allowed",
  message: "the TCP API is read-only",
  remedy: "send mutations to the unix socket as root: kata-sysextctl refresh | rollback",
};

/**
 * The host a request names: its Host header, unless the target is in absolute form (GET http://host/path), whose
 * authority wins over Host (RFC 9112 section 3.2.2) and so must pass the same check.
 */
function requestAuthority(target: string, host: string | undefined): string {
  if (target.startsWith("/")) return host ?? "";
  return /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(target)?.[1] ?? "";
}

/** The 403 for a foreign Host, naming the address TCP is bound to (`[api] listen`, its port 0 resolved). */
function foreignHost(bound: string): ErrorBody {
  const port = /:([0-9]+)$/.exec(bound)?.[1];
  // localhost reaches a listener on 127.0.0.1 (which [::1] joins on the same port), not one on [::1] alone.
  const alias = bound.startsWith("127.0.0.1:") && port !== undefined ? ` or http://localhost:${port}/` : "";
  return {
    code: "forbidden-host",
    message: "requests must name localhost, 127.0.0.1 or [::1] in the Host header",
    remedy: `use http://${bound}/${alias}`,
  };
}

const CLIENT_ERROR_CODES: Record<number, string> = {
  400: "bad-request",
  404: "not-found",
  405: "method-not-allowed",
  406: "not-acceptable",
  413: "payload-too-large",
  414: "uri-too-long",
  415: "unsupported-media-type",
};

function httpServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Server {
  const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000, maxHeaderSize: 16 * 1024 }, handler);
  server.keepAliveTimeout = 5_000;
  return server;
}

const sendError = (reply: FastifyReply, code: number, body: ErrorBody): FastifyReply =>
  reply.code(code).type(JSON_UTF8).send(body);

function buildApp(
  transport: Transport,
  specs: readonly RouteSpec[],
  log: Logger,
  /** TCP only: the 403 for a foreign Host (foreignHost). */
  forbidden?: () => ErrorBody,
): { app: FastifyInstance; newServer: () => Server } {
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const app = Fastify({
    logger: false,
    bodyLimit: 16 * 1024,
    serverFactory: (h) => {
      handler = h;
      return httpServer(h);
    },
  });
  app.setValidatorCompiler(compileQueryValidator);
  let first = true;
  const newServer = (): Server => {
    if (first) {
      first = false;
      return app.server;
    }
    if (handler === undefined) throw new KataError("internal", "fastify did not hand over its request handler");
    return httpServer(handler);
  };

  const served = specs.filter((s) => transport === "socket" || !s.socketOnly);
  const allowed = new Map<string, string[]>();
  for (const spec of served) {
    const methods = allowed.get(spec.url) ?? [];
    methods.push(...(spec.method === "GET" ? ["GET", "HEAD"] : [spec.method]));
    allowed.set(spec.url, methods);
  }

  if (transport === "tcp") {
    if (forbidden === undefined) throw new KataError("internal", "the TCP API needs its 403 for a foreign Host");
    // A callback hook, not an async one: it runs on every request and a promise per request shows in req/s.
    app.addHook("onRequest", (request, reply, done) => {
      if (!LOOPBACK_HOST.test(requestAuthority(request.raw.url ?? "", request.headers.host))) {
        sendError(reply, 403, forbidden());
      } else if (request.method !== "GET" && request.method !== "HEAD") {
        sendError(reply.header("allow", "GET, HEAD"), 405, TCP_READ_ONLY);
      } else done();
    });
  }

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split("?")[0] ?? "";
    const methods = allowed.get(path);
    if (methods !== undefined) {
      return sendError(reply.header("allow", methods.join(", ")), 405, {
        code: "method-not-allowed",
        message: `${path} answers ${methods.join(", ")}`,
        remedy: null,
      });
    }
    return sendError(reply, 404, {
      code: "not-found",
      message: `no route ${request.method} ${path.slice(0, 200)}`,
      remedy: "GET /openapi.json lists the routes",
    });
  });

  app.setErrorHandler((err: FastifyError | KataError, request, reply) => {
    const status = "statusCode" in err && typeof err.statusCode === "number" ? err.statusCode : 500;
    if (status >= 400 && status < 500) {
      return sendError(reply, status, {
        code: CLIENT_ERROR_CODES[status] ?? "client-error",
        message: err.message,
        remedy: null,
      });
    }
    const body = errorBody(err);
    log.error(`API ${request.method} ${request.url} failed: ${body.message}`, {
      ERROR_CODE: body.code,
      API_TRANSPORT: transport,
    });
    return sendError(reply, 500, body);
  });

  for (const spec of served) {
    app.route({
      method: spec.method,
      url: spec.url,
      schema: {
        // A route without parameters declares that too: an unknown one is a 400 that names it, not ignored.
        querystring: spec.querystring ?? NO_QUERY,
        response: spec.responses,
      },
      handler: spec.handler,
    });
  }
  return { app, newServer };
}

/**
 * Starts both listeners. Any failure (port taken, socket folder not ours, no permission) closes what was
 * already bound and throws one KataError "api-failed" whose message and remedy fit on one log line.
 */
export async function startApi(opts: ApiOptions): Promise<ApiHandle> {
  const version = opts.snapshot().daemon.version;
  const docs: Record<Transport, unknown> = { tcp: undefined, socket: undefined };
  const specsFor = (transport: Transport): RouteSpec[] =>
    routes({
      snapshot: opts.snapshot,
      metrics: opts.metrics,
      actions: opts.actions,
      progressIntervalMs: opts.progressIntervalMs ?? 250,
      // Assembled when first asked for, which most daemons never are.
      openapi: () => (docs[transport] ??= openApiDocument(specs[transport], transport, version)),
    });
  const specs: Record<Transport, RouteSpec[]> = { tcp: specsFor("tcp"), socket: specsFor("socket") };

  // Set once TCP is bound; no request is answered before.
  let forbidden: ErrorBody | null = null;
  const tcp =
    opts.listen === null
      ? null
      : buildApp("tcp", specs.tcp, opts.log, () => (forbidden ??= foreignHost(tcpAddresses[0] ?? opts.listen ?? "")));
  const socket = buildApp("socket", specs.socket, opts.log);
  const tcpServers: Server[] = [];
  let tcpAddresses: string[] = [];
  let closeSocket: (() => Promise<void>) | null = null;

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await Promise.all(tcpServers.map(closeServer));
      await closeSocket?.();
      await Promise.all([tcp?.app.close(), socket.app.close()]);
    })();
    return closing;
  };

  try {
    await Promise.all([tcp?.app.ready(), socket.app.ready()]);
    if (tcp !== null && opts.listen !== null) {
      const bound = await bindLoopback(tcp.newServer, opts.listen, opts.log);
      tcpServers.push(...bound.servers);
      tcpAddresses = bound.addresses;
    }
    closeSocket = await bindSocket(socket.newServer(), opts.socketPath);
  } catch (err) {
    await close().catch(() => undefined);
    if (err instanceof KataError) throw err;
    throw new KataError("api-failed", `cannot start the API: ${(err as Error).message}`, { cause: err });
  }

  opts.log.notice(`API listening on ${[...tcpAddresses, opts.socketPath].join(", ")}`, {
    API_TCP: tcpAddresses.join(" "),
    API_SOCKET: opts.socketPath,
  });
  return { tcpAddresses, close };
}
