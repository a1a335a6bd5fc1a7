// @ts-check
/**
 * Bench-only: roomwire's standalone server (startServer from dist/server.js, configured by
 * the environment like dist/bin/roomwire.js), with its Redis broker on an ioredis client
 * made from WEBSOCKET_REDIS_URL instead of the node-redis client the bin makes. Without
 * the variable it is the plain standalone server. On SIGTERM it closes every client (1001)
 * and exits 0.
 */
import { Redis } from 'ioredis';
import { createRedisBroker } from '../../dist/redis.js';
import { startServer } from '../../dist/server.js';

const url = process.env.WEBSOCKET_REDIS_URL;
const env = { ...process.env };
delete env.WEBSOCKET_REDIS_URL;
const broker = url === undefined || url === '' ? undefined : createRedisBroker({ client: new Redis(url, { lazyConnect: true }) });
const running = await startServer({ env, hub: broker === undefined ? undefined : { broker } });
const stop = () => void running.close().then(() => process.exit(0), () => process.exit(1));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
