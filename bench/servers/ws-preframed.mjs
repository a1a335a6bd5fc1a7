// @ts-check
/**
 * Hand-written room server on `ws`, pre-framed broadcast: one JSON.stringify and one
 * WebSocket frame per message, the same frame bytes written to every member's socket
 * (what Socket.IO does internally). See ws-common.mjs for the protocol and heartbeat.
 */
import { runWsServer } from './ws-common.mjs';

runWsServer('ws-preframed', { preframed: true });
