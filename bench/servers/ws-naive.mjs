// @ts-check
/**
 * Hand-written room server on `ws`, naive broadcast: one JSON.stringify per message,
 * then `ws.send(text)` to every member. See ws-common.mjs for the protocol and heartbeat.
 */
import { runWsServer } from './ws-common.mjs';

runWsServer('ws-naive', { preframed: false });
