// @ts-check
/**
 * Bench-only (issue 17): roomwire without Prometheus metrics. A hub configured by the
 * environment like the standalone server (every check on), attached to a Node http server
 * with `roomwire/node`, and no metrics registry: the standalone server registers one, so
 * the two side by side show what metrics cost. GET /healthz answers `{"connections":n}`.
 * On SIGTERM it closes every client (1001) and exits 0.
 */
import http from 'node:http';
import { configFromEnv, createHub } from '../../dist/index.js';
import { attach } from '../../dist/node.js';

const env = process.env;
const hub = createHub(configFromEnv(env, { alsoRead: ['HOST', 'PORT', 'LOG_LEVEL', 'MAX_UNFINISHED_REQUESTS'], warn: () => {} }));
const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ connections: hub.size }));
    return;
  }
  res.writeHead(404);
  res.end();
});
attach(hub, server);
const host = env.HOST || '127.0.0.1';
server.listen(Number(env.PORT || 0), host, () => {
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  process.stdout.write(`${JSON.stringify({ msg: `roomwire-bare listening on http://${host}:${port}`, pid: process.pid })}\n`);
});
const stop = () => void hub.close().then(() => process.exit(0), () => process.exit(1));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
