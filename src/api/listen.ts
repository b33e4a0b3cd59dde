// Where the API listens: loopback TCP (read-only) and the root-only unix socket (mutations). Every failure
// becomes one KataError "api-failed" that names the address and what to do, never a stack trace.
import { chmod, lstat, mkdir, unlink } from "node:fs/promises";
import type { Server } from "node:http";
import { connect } from "node:net";
import { dirname } from "node:path";
import { KataError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";

export interface ListenAddress {
  host: "127.0.0.1" | "::1";
  port: number;
}

const LISTEN = /^(127\.0\.0\.1|localhost|\[::1\]):([0-9]{1,5})$/;

/** "127.0.0.1:8720", "localhost:8720" or "[::1]:8720"; anything else is refused, the API never leaves loopback. */
export function parseListen(listen: string): ListenAddress {
  const match = LISTEN.exec(listen);
  const port = Number(match?.[2]);
  if (match === null || port > 65_535) {
    throw new KataError("api-failed", `api.listen must be a loopback address like "127.0.0.1:8720", got "${listen}"`, {
      remedy: 'set [api] listen = "127.0.0.1:8720" in /etc/kata-sysextd/config.toml',
    });
  }
  return { host: match[1] === "[::1]" ? "::1" : "127.0.0.1", port };
}

export const formatAddress = (host: string, port: number): string =>
  host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;

function listenOn(server: Server, options: { host: string; port: number } | { path: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off("listening", onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen(options);
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function bindError(err: unknown, where: string, remedy: string): KataError {
  const errno = (err as NodeJS.ErrnoException).code;
  const why =
    errno === "EADDRINUSE"
      ? "address already in use"
      : errno === "EACCES" || errno === "EPERM"
        ? "permission denied"
        : errno === "EADDRNOTAVAIL"
          ? "address not available on this host"
          : (err as Error).message;
  return new KataError("api-failed", `cannot listen on ${where}: ${why}`, { remedy, cause: err });
}

/**
 * Binds the configured loopback address, plus [::1] on the same port when the configuration names IPv4
 * loopback or localhost: clients that resolve "localhost" to ::1 first then still reach us. A host without
 * IPv6 (or with ::1 taken) keeps the IPv4 listener; only the configured address is mandatory.
 */
export async function bindLoopback(
  createServer: () => Server,
  listen: string,
  log: Logger,
): Promise<{ servers: Server[]; addresses: string[] }> {
  const { host, port } = parseListen(listen);
  const primary = createServer();
  try {
    await listenOn(primary, { host, port });
  } catch (err) {
    throw bindError(
      err,
      formatAddress(host, port),
      `find the process holding the port (ss -ltnp 'sport = :${port}') and stop it, or set another [api] listen in /etc/kata-sysextd/config.toml`,
    );
  }
  const address = primary.address();
  const bound = typeof address === "object" && address !== null ? address.port : port;
  const servers = [primary];
  const addresses = [formatAddress(host, bound)];
  if (host === "127.0.0.1") {
    const secondary = createServer();
    try {
      await listenOn(secondary, { host: "::1", port: bound });
      servers.push(secondary);
      addresses.push(formatAddress("::1", bound));
    } catch (err) {
      log.info("API not listening on [::1], IPv4 loopback only", {
        API_ADDRESS: formatAddress("::1", bound),
        ERRNO: (err as NodeJS.ErrnoException).code ?? String(err),
      });
    }
  }
  return { servers, addresses };
}

/** The unix socket's folder: created 0700, and refused when it is not a directory we own. */
async function prepareSocketDir(dir: string): Promise<void> {
  const remedy = `remove ${dir}; kata-sysextd recreates it (mode 0700, owned by root)`;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  if (!st.isDirectory()) throw new KataError("api-failed", `${dir} is not a directory`, { remedy });
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new KataError("api-failed", `${dir} is owned by uid ${st.uid}, not by uid ${uid} that runs kata-sysextd`, {
      remedy,
    });
  }
  if ((st.mode & 0o077) !== 0) await chmod(dir, 0o700);
}

/** Whether a process accepts connections on the socket (a live daemon), as opposed to a stale file. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect({ path });
    const done = (alive: boolean): void => {
      probe.destroy();
      resolve(alive);
    };
    probe.once("connect", () => done(true));
    probe.once("error", () => done(false));
    probe.setTimeout(1000, () => done(true));
  });
}

/** A socket file left by a daemon that died is removed; anything else in its place is left alone and refused. */
async function removeStaleSocket(path: string): Promise<void> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  if (!st.isSocket()) {
    throw new KataError("api-failed", `refusing to replace ${path}: it exists and is not a socket`, {
      remedy: `look at what ${path} is, remove it by hand, then restart kata-sysextd`,
    });
  }
  if (await socketAnswers(path)) {
    throw new KataError("api-failed", `another kata-sysextd is already serving ${path}`, {
      remedy: "stop the other instance first (systemctl stop kata-sysextd), or give this one another --root",
    });
  }
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
  });
}

/**
 * Listens on the unix socket with mode 0600 inside a 0700 folder. The folder is what keeps others out in the
 * moment between bind() and chmod(). Returns how to close it again, which removes the socket file only if it
 * is still the one we created.
 */
export async function bindSocket(server: Server, socketPath: string): Promise<() => Promise<void>> {
  const remedy = `run kata-sysextd as root; it needs to create ${socketPath} (mode 0600)`;
  let ino: number;
  try {
    await prepareSocketDir(dirname(socketPath));
    await removeStaleSocket(socketPath);
    await listenOn(server, { path: socketPath });
    await chmod(socketPath, 0o600);
    ino = (await lstat(socketPath)).ino;
  } catch (err) {
    await closeServer(server);
    if (err instanceof KataError) throw err;
    throw bindError(err, socketPath, remedy);
  }
  return async () => {
    await closeServer(server);
    const st = await lstat(socketPath).catch(() => null);
    if (st?.isSocket() && st.ino === ino) await unlink(socketPath).catch(() => undefined);
  };
}
