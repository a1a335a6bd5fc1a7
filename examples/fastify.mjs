// @ts-check
// roomwire as a Fastify plugin, configured from the environment like the standalone
// server (HOST, PORT and the WEBSOCKET_* variables). Run from the repository root:
//   npm run example:fastify
import Fastify from 'fastify';
import { configFromEnv } from 'roomwire';
import roomwire from 'roomwire/fastify';
import { redisBrokerFromEnv } from 'roomwire/redis';
import { chatPage } from 'roomwire/server';

const app = Fastify();
// A bad configuration throws, naming every bad variable; WEBSOCKET_REDIS_URL spreads the hub over processes.
await app.register(roomwire, { ...configFromEnv(), broker: redisBrokerFromEnv() });
const hub = app.roomwire;

const page = chatPage(hub.config.path, { maxMessageSize: hub.config.maxMessageSize });
app.get('/', (request, reply) => reply.type('text/html; charset=utf-8').send(page));
app.get('/hello', async () => ({ hello: 'fastify', connections: hub.size }));

hub.on('join', (client, room) => console.log(`${client.username} joined ${room}`));

const host = process.env.HOST || '0.0.0.0';
await app.listen({ host, port: Number(process.env.PORT || 8080) });
const { port } = /** @type {import('node:net').AddressInfo} */ (app.server.address());
console.log(`roomwire fastify example listening on http://${host}:${port}`);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await app.close(); // closes the hub first (1001 to every client), then the server
    process.exit(0);
  });
}
