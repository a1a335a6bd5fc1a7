// @ts-check
/** A `ws` connection that has joined a room, shared by the bench's load generators. */
import WebSocket from 'ws';

/**
 * Open `url` (a `ws://…/ws/<room>` endpoint) and resolve once the connection's own join
 * and its user list arrived; every later frame goes to `onFrame` as text.
 * @param {string} url
 * @param {{ localAddress: string, maxPayload?: number, handshakeTimeout?: number, onFrame: (text: string) => void, onClose?: (code: number) => void }} options
 * @returns {Promise<WebSocket>}
 */
export function member(url, options) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      localAddress: options.localAddress,
      maxPayload: options.maxPayload ?? 1 << 20,
      ...(options.handshakeTimeout === undefined ? {} : { handshakeTimeout: options.handshakeTimeout }),
    });
    let ready = false;
    ws.on('message', (data) => {
      const text = data.toString();
      if (!ready) {
        if (text.startsWith('{"type":"user_list"')) {
          ready = true;
          resolve(ws);
        }
        return;
      }
      options.onFrame(text);
    });
    ws.on('error', (err) => {
      if (!ready) reject(err);
    });
    ws.on('close', (code) => {
      if (ready) options.onClose?.(code);
      else reject(new Error(`closed ${code} before joining ${url}`));
    });
  });
}
