/**
 * `roomwire/server`: the standalone hub server (docs/protocol.md section 7), also run by the
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
import { answerAsRequest } from '../adapters/http';
import { createUpgradeHandler } from '../adapters/node';
import { limitUnfinishedRequests } from '../adapters/unfinished';
import { hubMetricFamilies, PROMETHEUS_CONTENT_TYPE, renderPrometheusText } from '../metrics/families';
import { brokerFromSettings, readRedisSettings, REDIS_PREFIX, type RedisSettings } from '../redis/env';
import type { CloseOptions, Hub, HubOptions } from '../core/api';
import { PARSERS, configFromEnv, type ConfigField, type HubConfig } from '../core/config';
import { configError, type ConfigIssue, type RoomwireError } from '../core/errors';
import { createHub } from '../core/hub';
import type { Logger } from '../core/types';
import { chatPage, clientScript } from './chat-page';
import { LOG_LEVELS, createJsonLogger, type LogLevel } from './logger';
import { StatsSampler, statsPage } from './stats-page';

export { chatPage, clientScript, createJsonLogger, statsPage, LOG_LEVELS };
export type { ChatPageOptions } from './chat-page';
export type { LogLevel };

/** Options of {@link startServer}. */
export interface ServerOptions {
  /** Environment to read the hub configuration, `HOST` and `PORT` from. @default process.env */
  env?: Record<string, string | undefined>;
  /**
   * Hooks and seams added to the configuration from `env` (authenticate, canJoin, broker,
   * ...). A `broker` given here replaces the one `WEBSOCKET_REDIS_URL` would make.
   */
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
  /** `http://INTERNAL_HOST:port` of the internal listener, when `INTERNAL_PORT` is set. */
  readonly internalUrl: string | undefined;
  readonly hub: Hub;
  readonly server: http.Server;
  /**
   * Graceful shutdown: 1001 to every client (spread over `WEBSOCKET_DRAIN_WINDOW`, or
   * `options.drain`, while `/healthz` answers 503 `draining`), then stop listening.
   */
  close(options?: CloseOptions): Promise<void>;
}

function listenPort(raw: unknown): number {
  const text = String(raw).trim();
  const port = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!(port >= 0 && port <= 65_535)) throw `must be an integer from 0 to 65535, not "${String(raw)}"`;
  return port;
}

function logLevel(raw: unknown): LogLevel {
  const level = String(raw).trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw `must be one of ${LOG_LEVELS.join(', ')}, not "${String(raw)}"`;
  return level as LogLevel;
}

/**
 * The standalone server's own settings, beside the hub's `CONFIG_FIELDS` (from `roomwire`): the
 * listeners, logging, the stats pages and the guard against unfinished requests. Every
 * variable the server reads is in one of the two tables.
 */
export const SERVER_FIELDS: readonly ConfigField[] = [
  { key: 'host', env: 'HOST', parse: (r) => PARSERS.optionalString(r) ?? '0.0.0.0', default: '0.0.0.0' },
  { key: 'port', env: 'PORT', parse: listenPort, default: 8080 },
  { key: 'logLevel', env: 'LOG_LEVEL', parse: logLevel, default: 'info' },
  { key: 'internalHost', env: 'INTERNAL_HOST', parse: (r) => PARSERS.optionalString(r) ?? '127.0.0.1', default: '127.0.0.1' },
  { key: 'internalPort', env: 'INTERNAL_PORT', parse: listenPort, default: undefined },
  { key: 'statsRoomNames', env: 'STATS_ROOM_NAMES', parse: PARSERS.bool, default: false },
  { key: 'headersTimeout', env: 'HEADERS_TIMEOUT', parse: PARSERS.positiveDuration, default: 10_000 },
  { key: 'maxUnfinishedRequests', env: 'MAX_UNFINISHED_REQUESTS', parse: PARSERS.int(1), default: 32 },
];

/** The standalone server's settings, resolved; see {@link SERVER_FIELDS}. */
export interface ServerSettings {
  /** `HOST`: the address the WebSocket and page listener binds. @default '0.0.0.0' */
  readonly host: string;
  /** `PORT`: its port (0 picks a free one). @default 8080 */
  readonly port: number;
  /** `LOG_LEVEL`: debug, info, warn, error or silent. @default 'info' */
  readonly logLevel: LogLevel;
  /** `INTERNAL_HOST`: the address of the internal listener. @default '127.0.0.1' */
  readonly internalHost: string;
  /**
   * `INTERNAL_PORT`: when set, `/metrics`, `/stats` and `/stats.json` are served only on a
   * second listener at this port (on `INTERNAL_HOST`), and answer 404 on the main one.
   * @default unset: served on the main listener
   */
  readonly internalPort: number | undefined;
  /** `STATS_ROOM_NAMES`: list the fullest rooms by name in `/stats` and `/stats.json`. @default false */
  readonly statsRoomNames: boolean;
  /**
   * `HEADERS_TIMEOUT`: milliseconds a connection may take to send a complete request
   * head; then it is answered 408 and closed. @default 10000
   */
  readonly headersTimeout: number;
  /**
   * `MAX_UNFINISHED_REQUESTS`: connections per client address whose first request head
   * is incomplete. One more gets one second to complete its head while those are younger
   * (a burst of connections) and is closed unanswered if it has not; when they are all
   * older (a slowloris), it is closed at once. @default 32
   */
  readonly maxUnfinishedRequests: number;
}

/**
 * Read the hub configuration and the server's own settings ({@link SERVER_FIELDS}) from
 * `env`; throws one `ERR_INVALID_CONFIG` {@link RoomwireError} naming every bad variable.
 */
export function serverConfigFromEnv(env: Record<string, string | undefined> = process.env): ServerSettings & { config: HubConfig; redis: RedisSettings; warnings: string[] } {
  let issues: ConfigIssue[] = [];
  let config: HubConfig | undefined;
  const warnings: string[] = [];
  const warn = (message: string): void => void warnings.push(message);
  try {
    // The Redis variables are checked by their own table (readRedisSettings), typos included.
    config = configFromEnv(env, { warn, alsoRead: Object.keys(env).filter((name) => name.startsWith(REDIS_PREFIX)) });
  } catch (err) {
    if ((err as RoomwireError).code !== 'ERR_INVALID_CONFIG') throw err;
    issues = [...(err as RoomwireError).issues];
  }
  const redis = readRedisSettings(env, warn);
  issues.push(...redis.issues);
  const settings: Record<string, unknown> = {};
  for (const field of SERVER_FIELDS) {
    const raw = env[field.env];
    try {
      settings[field.key] = raw === undefined || raw === '' ? field.default : field.parse(raw);
    } catch (msg) {
      issues.push({ name: field.env, message: String(msg) });
    }
  }
  const server = settings as unknown as ServerSettings;
  // WEBSOCKET_REQUIRE_AUTH=true with no key is no error (the contract answers every upgrade
  // 401 then); createHub warns about it at startup.
  if (server.internalPort !== undefined && server.internalPort !== 0 && server.internalPort === server.port) {
    issues.push({ name: 'INTERNAL_PORT', message: `must differ from PORT (${server.port})` });
  }
  if (issues.length > 0 || config === undefined) {
    // A typo'd variable is often why another is missing: say so with the error.
    throw configError([...issues, ...warnings.map((w) => ({ name: w.split(' ')[0] as string, message: w.slice(w.indexOf(' ') + 1) }))]);
  }
  return { ...server, config, redis: redis.settings, warnings };
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
  const settings = serverConfigFromEnv(env);
  const { config, host, port } = settings;
  const logger: Logger = options.hub?.logger ?? createJsonLogger(settings.logLevel, write);
  for (const message of settings.warnings) logger.warn({ variable: message.split(' ')[0] }, message);
  const redis = settings.redis;
  const broker = options.hub?.broker ?? (redis.url === undefined ? undefined : brokerFromSettings(redis));
  const hub = createHub({ ...options.hub, ...config, logger, ...(broker === undefined ? {} : { broker }) });
  const page = chatPage(config.path, { maxMessageSize: config.maxMessageSize });
  const startedAt = Date.now();
  const sampler = new StatsSampler(hub, options.statsIntervalMs);
  const metrics = await prometheusText(hub, logger);

  const health = (): string => {
    const st = hub.stats();
    return JSON.stringify({
      status: hub.draining ? 'draining' : hub.closing ? 'shutting_down' : 'ok',
      websocket: { enabled: config.enabled, path: config.path },
      connections: st.connections,
      rooms: st.rooms,
      broker: st.broker,
      uptime_seconds: Math.floor((Date.now() - startedAt) / 1000),
    });
  };

  /** Answer the operator pages; false when `path` is not one of them. */
  const operatorPage = (path: string, res: http.ServerResponse): boolean => {
    if (path === '/metrics') {
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
      respond(res, 200, 'application/json', sampler.json(settings.statsRoomNames), { 'Cache-Control': 'no-store' });
    } else {
      return false;
    }
    return true;
  };

  const internal = settings.internalPort !== undefined;
  const operatorPaths = new Set(['/metrics', '/stats', '/stats.json']);
  const publicPaths = new Set(['/', '/healthz', ...(internal ? [] : operatorPaths)]);
  const internalPaths = new Set(['/healthz', ...operatorPaths]);
  const handler =
    (paths: ReadonlySet<string>, chat: boolean) =>
    (req: http.IncomingMessage, res: http.ServerResponse): void => {
      const path = (req.url ?? '/').split('?')[0] as string;
      if (!paths.has(path)) {
        respond(res, 404, 'text/plain; charset=utf-8', 'not found\n');
      } else if (req.method !== 'GET' && req.method !== 'HEAD') {
        respond(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { Allow: 'GET, HEAD' });
      } else if (path === '/healthz') {
        // 503 while draining, so a load balancer sends new clients elsewhere.
        respond(res, hub.draining ? 503 : 200, 'application/json', health(), { 'Cache-Control': 'no-store' });
      } else if (chat && path === '/') {
        respond(res, 200, 'text/html; charset=utf-8', page, { 'Cache-Control': 'no-cache' });
      } else {
        operatorPage(path, res);
      }
    };

  const serverOptions = {
    // Every request head, first or later on a kept-alive connection, within HEADERS_TIMEOUT.
    headersTimeout: settings.headersTimeout,
    requestTimeout: Math.max(300_000, settings.headersTimeout),
    connectionsCheckingInterval: Math.min(30_000, Math.max(1000, Math.floor(settings.headersTimeout / 2))),
  };
  const guard = { headersTimeout: settings.headersTimeout, maxPerAddress: settings.maxUnfinishedRequests };
  const server = http.createServer(serverOptions, handler(publicPaths, true));
  const unguard = [limitUnfinishedRequests(server, guard)];
  let internalServer: http.Server | undefined;
  if (internal) {
    internalServer = http.createServer(serverOptions, handler(internalPaths, false));
    unguard.push(limitUnfinishedRequests(internalServer, guard));
  }

  // One upgrade listener: the hub's paths go to the hub; any other upgrade request is
  // answered as the HTTP request it also is (404 for unknown paths, /healthz still works
  // for a client that offers Upgrade: h2c).
  const handleUpgrade = createUpgradeHandler(hub);
  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (!handleUpgrade(req, socket, head)) answerAsRequest(server, req, socket);
  };
  server.on('upgrade', onUpgrade);

  const listen = (target: http.Server, p: number, h: string): Promise<number> =>
    new Promise<number>((resolve, reject) => {
      target.once('error', reject);
      target.listen(p, h, () => {
        target.off('error', reject);
        resolve((target.address() as AddressInfo).port);
      });
    });
  const stopListening = (target: http.Server): Promise<void> =>
    new Promise<void>((resolve) => {
      target.close(() => resolve());
      target.closeAllConnections();
    });

  // With Redis: connected and in step with the other processes before the first client
  // comes (or, Redis unreachable, serving this process alone after a few seconds).
  await hub.ready();
  let internalUrl: string | undefined;
  let bound: number;
  try {
    if (internalServer !== undefined) internalUrl = `http://${settings.internalHost}:${await listen(internalServer, settings.internalPort as number, settings.internalHost)}`;
    bound = await listen(server, port, host);
  } catch (err) {
    sampler.stop();
    for (const u of unguard) u();
    if (internalServer?.listening) await stopListening(internalServer);
    await hub.close();
    throw err;
  }
  const url = `http://${host}:${bound}`;
  // Always printed, whatever LOG_LEVEL: operators and tests wait for this line.
  const line: Record<string, unknown> = { level: 'info', time: Date.now(), msg: `roomwire listening on ${url}`, path: config.path };
  if (internalUrl !== undefined) line.internal = internalUrl;
  write(`${JSON.stringify(line)}\n`);

  let closing: Promise<void> | undefined;
  return {
    url,
    host,
    port: bound,
    internalUrl,
    hub,
    server,
    close(closeOptions?: CloseOptions) {
      closing ??= (async () => {
        // Listening on while the hub drains: upgrades get 503, /healthz answers draining.
        await hub.close(closeOptions);
        sampler.stop();
        server.off('upgrade', onUpgrade);
        for (const u of unguard) u();
        await Promise.all([stopListening(server), internalServer === undefined ? undefined : stopListening(internalServer)]);
      })();
      return closing;
    },
  };
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
    // prom-client is an optional peer dependency (`npx roomwire` does not install it): the
    // hub's own metrics are rendered without it, the process metrics are what is missing.
    // Not installed is the expected case: one line, no stack. Anything else is worth the error.
    const code = (err as { code?: unknown }).code;
    const missing = code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
    const message = 'prom-client is not installed: /metrics serves the hub metrics without the process metrics (npm install prom-client adds them)';
    if (missing) logger.info({}, message);
    else logger.warn({ err }, message);
    return async () => ({ status: 200, contentType: PROMETHEUS_CONTENT_TYPE, body: renderPrometheusText(hubMetricFamilies(hub.stats())) });
  }
}
