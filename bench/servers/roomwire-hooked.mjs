// @ts-check
/**
 * Bench-only (issue 17): roomwire's standalone server with a `canPublish` hook that allows
 * every message, to show what an application's hook costs per message. Configured by the
 * environment like dist/bin/roomwire.js; on SIGTERM it closes every client (1001) and exits 0.
 */
import { startServer } from '../../dist/server.js';

const running = await startServer({ env: process.env, hub: { canPublish: () => true } });
const stop = () => void running.close().then(() => process.exit(0), () => process.exit(1));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
