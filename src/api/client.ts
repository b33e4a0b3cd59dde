// The API's own client (node:http over the unix socket or loopback TCP), used by kata-sysextctl and the tests.
// Connection failures keep their errno (ENOENT, ECONNREFUSED, EACCES, ETIMEDOUT) so callers can say why.
import { request as httpRequest, type IncomingMessage } from "node:http";

export type Endpoint = { socketPath: string } | { url: string };

export interface ApiResponse {
  status: number;
  contentType: string;
  body: string;
}

export interface RequestOptions {
  /** The longest silence tolerated on the connection (default 10 s); a stream's heartbeats reset it. */
  timeoutMs?: number;
  headers?: Record<string, string>;
}

export class ApiConnectError extends Error {
  readonly errno: string;
  constructor(errno: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ApiConnectError";
    this.errno = errno;
  }
}

function open(
  endpoint: Endpoint,
  method: string,
  path: string,
  options: RequestOptions,
  onResponse: (res: IncomingMessage) => void,
  onError: (err: ApiConnectError) => void,
): void {
  const target =
    "socketPath" in endpoint
      ? { socketPath: endpoint.socketPath, path }
      : (() => {
          const url = new URL(path, endpoint.url);
          return { host: url.hostname.replace(/^\[|\]$/g, ""), port: url.port, path: url.pathname + url.search };
        })();
  const req = httpRequest({ ...target, method, headers: { accept: "application/json", ...options.headers } });
  const timeoutMs = options.timeoutMs ?? 10_000;
  req.setTimeout(timeoutMs, () => {
    req.destroy(new ApiConnectError("ETIMEDOUT", `no answer within ${timeoutMs} ms`));
  });
  req.on("error", (err: NodeJS.ErrnoException) => {
    onError(err instanceof ApiConnectError ? err : new ApiConnectError(err.code ?? "EIO", err.message, { cause: err }));
  });
  req.on("response", onResponse);
  req.end();
}

/** One request, the whole body as text. */
export function request(
  endpoint: Endpoint,
  method: string,
  path: string,
  options: RequestOptions = {},
): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    open(
      endpoint,
      method,
      path,
      options,
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", (err) => reject(new ApiConnectError("EIO", err.message, { cause: err })));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            contentType: res.headers["content-type"] ?? "",
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
      },
      reject,
    );
  });
}

/**
 * A request whose answer is application/x-ndjson: every parsed line goes to onLine as it arrives. Resolves
 * with the status when the stream ends; a non-ndjson answer (an error body) is passed whole to onBody.
 */
export function streamLines(
  endpoint: Endpoint,
  method: string,
  path: string,
  handlers: { onLine: (line: unknown) => void; onBody: (status: number, body: string) => void },
  options: RequestOptions = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    open(
      endpoint,
      method,
      path,
      { ...options, headers: { accept: "application/x-ndjson", ...options.headers } },
      (res) => {
        const status = res.statusCode ?? 0;
        const isStream = (res.headers["content-type"] ?? "").startsWith("application/x-ndjson");
        let pending = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          pending += chunk;
          if (!isStream) return;
          let newline = pending.indexOf("\n");
          while (newline >= 0) {
            const line = pending.slice(0, newline).trim();
            pending = pending.slice(newline + 1);
            if (line !== "") handlers.onLine(parseLine(line));
            newline = pending.indexOf("\n");
          }
        });
        res.on("error", (err) => reject(new ApiConnectError("EIO", err.message, { cause: err })));
        res.on("end", () => {
          if (!isStream) handlers.onBody(status, pending);
          else if (pending.trim() !== "") handlers.onLine(parseLine(pending.trim()));
          resolve(status);
        });
      },
      reject,
    );
  });
}

function parseLine(line: string): unknown {
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return { type: "garbage", line };
  }
}
