// @ts-check
// roomwire in a Koa app, configured from the environment like the standalone server
// (HOST, PORT and the WEBSOCKET_* variables). Run from the repository root:
//   npm run example:koa
import Koa from 'koa';
import { configFromEnv, createHub } from 'roomwire';
import { attach } from 'roomwire/koa';
import { redisBrokerFromEnv } from 'roomwire/redis';
import { chatPage } from 'roomwire/server';

// A bad configuration throws, naming every bad variable; WEBSOCKET_REDIS_URL spreads the hub over processes.
const hub = createHub({ ...configFromEnv(), broker: redisBrokerFromEnv() });
const page = chatPage(hub.config.path, { maxMessageSize: hub.config.maxMessageSize });
const app = new Koa();
app.use(async (ctx, next) => {
  if (ctx.method !== 'GET') return next();
  if (ctx.path === '/') {
    ctx.type = 'html';
    ctx.body = page;
  } else if (ctx.path === '/hello') {
    ctx.body = { hello: 'koa', connections: hub.size };
  } else {
    return next();
  }
});

hub.on('join', (client, room) => console.log(`${client.username} joined ${room}`));

const host = process.env.HOST || '0.0.0.0';
await hub.ready(); // with WEBSOCKET_REDIS_URL: in step with the other processes first
const server = app.listen(Number(process.env.PORT || 8080), host, () => {
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  console.log(`roomwire koa example listening on http://${host}:${port}`);
});
attach(hub, server); // upgrades under /ws go to the hub, other paths are left alone

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await hub.close(); // 1001 to every client
    server.close(() => process.exit(0));
  });
}
