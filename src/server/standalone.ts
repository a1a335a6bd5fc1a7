/**
 * `roomwire/server`: the standalone hub server (contract section 6), also run by the
 * `roomwire` bin. It serves the WebSocket endpoints, the chat page at `/`, `/healthz`,
 * `/metrics` (Prometheus text), the live stats page at `/stats`, and 404 elsewhere, with
 * its configuration from the environment and JSON-lines logs.
 *
 * @packageDocumentation
 * @module roomwire/server
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { answerAsRequest, createUpgradeHandler } from '../adapters/node';
import { configFromEnv, type HubConfig } from '../core/config';
import { RoomwireError, configError, type ConfigIssue } from '../core/errors';
import { createHub, type Hub, type HubOptions } from '../core/hub';
import type { Logger } from '../core/types';
import { chatPage } from './chat-page';
import { LOG_LEVELS, createJsonLogger, type LogLevel } from './logger';
import { StatsSampler, statsPage } from './stats-page';

export { chatPage, createJsonLogger, statsPage, LOG_LEVELS };
export type { LogLevel };

/** Options of {@link startServer}. */
export interface ServerOptions {
  /** Environment to read the hub configuration, `HOST` and `PORT` from. @default process.env */
  env?: Record<string, string | undefined>;
  /** Hooks and seams added to the configuration from `env` (authenticate, canJoin, broker, ...). */
  hub?: Omit<HubOptions, keyof HubConfig>;
  /** Where the JSON log lines go (the "listening on" line included). @default process.stdout */
  log?: (line: string) => void;
  /** How often `/stats` samples the hub, milliseconds. @default 5000 */
  statsIntervalMs?: number;
}

/** A running standalone server. */
export interface RunningServer {
  /** `http://HOST:PORT` as printed. */
  readonly url: string;
  readonly host: string;
  /** The bound port (useful with `PORT=0`). */
  readonly port: number;
  readonly hub: Hub;
  readonly server: http.Server;
  /** Graceful shutdown: 1001 to every client, then stop listening. */
  close(): Promise<void>;
}

function listenAddress(env: Record<string, string | undefined>): { host: string; port: number; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = [];
  const host = env.HOST === undefined || env.HOST === '' ? '0.0.0.0' : env.HOST;
  const rawPort = env.PORT === undefined || env.PORT === '' ? '8080' : env.PORT;
  const port = /^\d+$/.test(rawPort) ? Number(rawPort) : Number.NaN;
  if (!(port >= 0 && port <= 65_535)) issues.push({ name: 'PORT', message: `must be an integer from 0 to 65535, not "${rawPort}"` });
  return { host, port, issues };
}

/**
 * Read the configuration, `HOST` (default `0.0.0.0`) and `PORT` (default `8080`) from
 * `env`; throws one `ERR_INVALID_CONFIG` {@link RoomwireError} naming every bad variable.
 */
export function serverConfigFromEnv(env: Record<string, string | undefined> = process.env): {
  config: HubConfig;
  host: string;
  port: number;
  logLevel: LogLevel;
} {
  const address = listenAddress(env);
  const rawLevel = env.LOG_LEVEL === undefined || env.LOG_LEVEL === '' ? 'info' : env.LOG_LEVEL.trim().toLowerCase();
  const logLevel = (LOG_LEVELS as readonly string[]).includes(rawLevel) ? (rawLevel as LogLevel) : undefined;
  let config: HubConfig | undefined;
  let issues = address.issues;
  try {
    config = configFromEnv(env);
  } catch (err) {
    if ((err as RoomwireError).code !== 'ERR_INVALID_CONFIG') throw err;
    issues = [...(err as RoomwireError).issues, ...issues];
  }
  // Read from the raw environment, so this is reported even when other variables are bad.
  const set = (name: string) => env[name] !== undefined && env[name] !== '';
  if (env.WEBSOCKET_REQUIRE_AUTH?.trim().toLowerCase() === 'true') {
    if (!set('WEBSOCKET_JWT_SECRET') && !set('WEBSOCKET_JWT_PUBLIC_KEY') && !set('WEBSOCKET_JWKS_URL')) {
      issues = [...issues, {
        name: 'WEBSOCKET_REQUIRE_AUTH',
        message: 'true needs WEBSOCKET_JWT_SECRET, WEBSOCKET_JWT_PUBLIC_KEY or WEBSOCKET_JWKS_URL to verify tokens',
      }];
    }
  }
  if (logLevel === undefined) {
    issues = [...issues, { name: 'LOG_LEVEL', message: `must be one of ${LOG_LEVELS.join(', ')}, not "${env.LOG_LEVEL}"` }];
  }
  if (issues.length > 0 || config === undefined || logLevel === undefined) throw configError(issues);
  return { config, host: address.host, port: address.port, logLevel };
}

function respond(res: http.ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...extra });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/**
 * Start the standalone server and resolve once it listens, after printing
 * `roomwire listening on http://HOST:PORT`. Rejects with `ERR_INVALID_CONFIG` before
 * listening when the configuration is bad.
 *
 * @example
 * ```ts
 * import { startServer } from 'roomwire/server';
 * const running = await startServer({ env: { PORT: '0', WEBSOCKET_JWT_SECRET: 's3cret' } });
 * console.log(running.url);
 * await running.close();
 * ```
 */
export async function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  const env = options.env ?? process.env;
  const write = options.log ?? ((line: string) => void process.stdout.write(line));
  const { config, host, port, logLevel } = serverConfigFromEnv(env);
  const logger: Logger = options.hub?.logger ?? createJsonLogger(logLevel, write);
  const hub = createHub({ ...options.hub, ...config, logger });
  const page = chatPage(config.path);
  const startedAt = Date.now();
  const sampler = new StatsSampler(hub, options.statsIntervalMs);
  const metrics = await prometheusText(hub, logger);

  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] as string;
    const known = path === '/' || path === '/healthz' || path === '/metrics' || path === '/stats' || path === '/stats.json';
    if (known && req.method !== 'GET' && req.method !== 'HEAD') {
      respond(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { Allow: 'GET, HEAD' });
    } else if (path === '/metrics') {
      metrics().then(
        (m) => respond(res, m.status, m.contentType, m.body, { 'Cache-Control': 'no-store' }),
        (err: unknown) => {
          logger.error({ err }, 'metrics failed');
          respond(res, 500, 'text/plain; charset=utf-8', 'metrics failed\n');
        },
      );
    } else if (path === '/stats') {
      respond(res, 200, 'text/html; charset=utf-8', statsPage(), { 'Cache-Control': 'no-cache' });
    } else if (path === '/stats.json') {
      respond(res, 200, 'application/json', sampler.json(), { 'Cache-Control': 'no-store' });
    } else if (path === '/') {
      respond(res, 200, 'text/html; charset=utf-8', page, { 'Cache-Control': 'no-cache' });
    } else if (path === '/healthz') {
      const body = JSON.stringify({
        status: hub.closing ? 'shutting_down' : 'ok',
        websocket: { enabled: config.enabled, path: config.path },
        connections: hub.size,
        rooms: hub.roomNames().length,
        broker: hub.stats().broker,
        uptime_seconds: Math.floor((Date.now() - startedAt) / 1000),
      });
      respond(res, 200, 'application/json', body, { 'Cache-Control': 'no-store' });
    } else {
      respond(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    }
  });

  // One upgrade listener: the hub's paths go to the hub; any other upgrade request is
  // answered as the HTTP request it also is (404 for unknown paths, /healthz still works
  // for a client that offers Upgrade: h2c).
  const handleUpgrade = createUpgradeHandler(hub);
  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (!handleUpgrade(req, socket, head)) answerAsRequest(server, req, socket);
  };
  server.on('upgrade', onUpgrade);

  // With Redis: connected and in step with the other processes before the first client
  // comes (or, Redis unreachable, serving this process alone after a few seconds).
  await hub.ready();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  const url = `http://${host}:${bound}`;
  // Always printed, whatever LOG_LEVEL: operators and tests wait for this line.
  write(`${JSON.stringify({ level: 'info', time: Date.now(), msg: `roomwire listening on ${url}`, path: config.path })}\n`);

  let closing: Promise<void> | undefined;
  return {
    url,
    host,
    port: bound,
    hub,
    server,
    close() {
      closing ??= (async () => {
        sampler.stop();
        await hub.close();
        server.off('upgrade', onUpgrade);
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      })();
      return closing;
    },
  };
}

/**
 * Run the standalone server as a process: start it, and on SIGTERM or SIGINT close
 * every client with 1001 and exit 0. A bad configuration prints every bad variable and
 * exits with status 2 before listening.
 */
export async function main(env: Record<string, string | undefined> = process.env): Promise<void> {
  // Handlers go in before listening so a signal that arrives right after the
  // "listening" line still shuts down gracefully.
  let running: RunningServer | undefined;
  let stopping: string | undefined;
  const stop = (signal: string) => {
    if (stopping !== undefined) return;
    stopping = signal;
    if (running === undefined) return; // startServer resolves, then stops at once
    process.stdout.write(`${JSON.stringify({ level: 'info', time: Date.now(), msg: `${signal} received, closing connections`, connections: running.hub.size })}\n`);
    running.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`roomwire: shutdown failed: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  // `on`, not `once`: a second signal during the graceful window must not kill the
  // process with the default handler; stop() ignores repeats.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  try {
    running = await startServer({ env });
  } catch (err) {
    const e = err as RoomwireError;
    console.error(`roomwire: ${e.code === 'ERR_INVALID_CONFIG' ? e.message : `cannot start: ${e.message}`}`);
    process.exit(2);
  }
  if (stopping !== undefined) {
    const signal = stopping;
    stopping = undefined;
    stop(signal);
  }
}

interface MetricsResponse {
  status: number;
  contentType: string;
  body: string;
}

/**
 * `/metrics` from prom-client (an optional peer dependency): the hub's metrics plus the
 * process's default metrics on a registry of this server. Without prom-client, `/metrics`
 * answers 503 saying so.
 */
async function prometheusText(hub: Hub, logger: Logger): Promise<() => Promise<MetricsResponse>> {
  try {
    const prom = await import('prom-client');
    const { registerHubMetrics } = await import('../metrics/prometheus');
    const registry = new prom.Registry();
    prom.collectDefaultMetrics({ register: registry });
    registerHubMetrics(hub, { registry });
    return async () => ({ status: 200, contentType: registry.contentType, body: await registry.metrics() });
  } catch (err) {
    logger.warn({ err }, 'prom-client is not installed: /metrics answers 503 (npm install prom-client)');
    const body = 'metrics need prom-client: npm install prom-client\n';
    return async () => ({ status: 503, contentType: 'text/plain; charset=utf-8', body });
  }
}
