// @ts-check
// roomwire on a plain Node http server, configured from the environment like the
// standalone server. Run from the repository root: npm run example:node
import http from 'node:http';
import { configFromEnv, createHub } from 'roomwire';
import { attach } from 'roomwire/node';
import { redisBrokerFromEnv } from 'roomwire/redis';
import { chatPage } from 'roomwire/server';

const hub = createHub({ ...configFromEnv(), broker: redisBrokerFromEnv() }); // WEBSOCKET_REDIS_URL: one hub over several processes
const page = chatPage(hub.config.path, { maxMessageSize: hub.config.maxMessageSize });
const server = http.createServer((req, res) => {
  if (req.url === '/') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(page);
  } else {
    res.writeHead(404).end('not found\n');
  }
});
attach(hub, server);

hub.on('join', (client, room) => console.log(`${client.username} joined ${room}`));

const host = process.env.HOST || '0.0.0.0';
const port = Number(process.env.PORT || 8080);
await hub.ready(); // with WEBSOCKET_REDIS_URL: in step with the other processes first
server.listen(port, host, () => {
  const address = /** @type {import('node:net').AddressInfo} */ (server.address());
  console.log(`roomwire node example listening on http://${host}:${address.port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await hub.close(); // 1001 to every client
    server.close(() => process.exit(0));
  });
}
