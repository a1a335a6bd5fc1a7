// A roomwire server process for the scale-out tests, with Redis broker timings short
// enough for a test (the bin has the defaults: 2 s heartbeats, 10 s process timeout).
// Usage: node test/helpers/broker-process.mjs <redis url> <heartbeat ms> <process timeout ms> [redis|ioredis]
// Prints the standalone server's "listening on http://127.0.0.1:PORT" line.
import { Redis } from 'ioredis';
import { createRedisBroker } from '../../dist/redis.js';
import { startServer } from '../../dist/server.js';

const [url, heartbeat, timeout, library = 'redis'] = process.argv.slice(2);
const timings = { beatInterval: Number(heartbeat), processTimeout: Number(timeout) };
const broker =
  library === 'ioredis' ? createRedisBroker({ ...timings, client: new Redis(String(url), { lazyConnect: true }) }) : createRedisBroker({ ...timings, url: String(url) });
const running = await startServer({
  env: { HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'warn', WEBSOCKET_MESSAGE_RATE: '10000/s,10000' },
  hub: { broker },
});
process.once('SIGTERM', () => void running.close().then(() => process.exit(0)));
