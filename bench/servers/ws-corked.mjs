// @ts-check
/**
 * Hand-written room server on `ws` at the practical limit of Node: pre-framed broadcast
 * (one JSON.stringify and one WebSocket frame per message, the same bytes to every member)
 * and every socket written to during one event-loop turn corked until the turn ends, so one
 * write per socket per turn carries all its frames. It checks nothing beyond what the load
 * needs (see ws-common.mjs): the reference roomwire is measured against in issue 17.
 */
import { runWsServer } from './ws-common.mjs';

runWsServer('ws-corked', { preframed: true, corked: true });
