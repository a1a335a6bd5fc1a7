// @ts-check
// roomwire in an Express app, configured from the environment like the standalone server
// (HOST, PORT and the WEBSOCKET_* variables). Run from the repository root:
//   npm run example:express
import express from 'express';
import { configFromEnv, createHub } from 'roomwire';
import { attach } from 'roomwire/express';
import { redisBrokerFromEnv } from 'roomwire/redis';
import { chatPage } from 'roomwire/server';

// A bad configuration throws, naming every bad variable; WEBSOCKET_REDIS_URL spreads the hub over processes.
const hub = createHub({ ...configFromEnv(), broker: redisBrokerFromEnv() });
const app = express();
app.get('/', (req, res) => res.type('html').send(chatPage(hub.config.path, { maxMessageSize: hub.config.maxMessageSize })));
app.get('/hello', (req, res) => res.json({ hello: 'express', connections: hub.size }));
attach(hub, app); // the server app.listen() creates hands upgrades under /ws to the hub

hub.on('join', (client, room) => console.log(`${client.username} joined ${room}`));

const host = process.env.HOST || '0.0.0.0';
await hub.ready(); // with WEBSOCKET_REDIS_URL: in step with the other processes first
const server = app.listen(Number(process.env.PORT || 8080), host, (err) => {
  if (err) throw err;
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  console.log(`roomwire express example listening on http://${host}:${port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await hub.close(); // 1001 to every client
    server.close(() => process.exit(0));
  });
}
