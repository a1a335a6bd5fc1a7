// @ts-check
/**
 * The AsyncAPI 3.0 document of roomwire's wire protocol, built from the per-frame JSON
 * Schemas that `frameJsonSchemas('draft-7')` generates from the zod schemas (AsyncAPI's
 * default schema format is a superset of JSON Schema draft 7). Used by scripts/protocol.mjs
 * (from the build) and by the test that validates it with @asyncapi/parser (from the source).
 */

/** @param {string} name `client.join` → `ClientJoin` */
function messageId(name) {
  return name
    .split(/[._]/)
    .map((p) => p.charAt(0).toUpperCase() + p.slice(1))
    .join('');
}

/**
 * @param {string} version the package version
 * @param {Record<string, Record<string, unknown>>} frames `frameJsonSchemas('draft-7')`
 */
export function asyncApiDocument(version, frames) {
  /** @type {Record<string, unknown>} */
  const schemas = {};
  /** @type {Record<string, unknown>} */
  const messages = {};
  /** @type {Record<string, unknown>} */
  const channelMessages = {};
  /** @type {{ $ref: string }[]} */
  const received = [];
  /** @type {{ $ref: string }[]} */
  const sent = [];
  for (const [name, schema] of Object.entries(frames)) {
    const id = messageId(name);
    const [side, type] = name.split('.');
    schemas[id] = schema;
    messages[id] = {
      name: type,
      title: `${side === 'client' ? 'client → server' : 'server → client'}: ${type}`,
      ...(typeof schema.description === 'string' ? { summary: schema.description } : {}),
      contentType: 'application/json',
      payload: { $ref: `#/components/schemas/${id}` },
    };
    channelMessages[id] = { $ref: `#/components/messages/${id}` };
    (side === 'client' ? received : sent).push({ $ref: `#/channels/hub/messages/${id}` });
  }
  return {
    asyncapi: '3.0.0',
    info: {
      title: 'roomwire',
      version,
      description:
        'The WebSocket protocol of a roomwire hub: rooms, JWT identity, requests and replies. One JSON object per text frame. ' +
        'Generated from the zod schemas the server validates with; the prose rules (check order, limits, closing) are in docs/protocol.md.',
      license: { name: 'MIT' },
    },
    servers: {
      standalone: {
        host: 'localhost:8080',
        protocol: 'ws',
        description: 'The standalone server (npx roomwire) with its defaults; wss behind TLS.',
      },
    },
    defaultContentType: 'application/json',
    channels: {
      hub: {
        address: '/ws',
        title: 'the hub',
        description:
          'The base path WEBSOCKET_PATH (default /ws). The same frames flow on /ws/{room} (joins the room on connect), /ws/auth and /ws/auth/{room} (a token is required). ' +
          'A token is given as Authorization: Bearer, ?token= or the token cookie.',
        messages: channelMessages,
      },
    },
    operations: {
      receiveClientFrames: {
        action: 'receive',
        channel: { $ref: '#/channels/hub' },
        summary: 'Frames a client sends; each may carry an id, answered by exactly one reply that carries it.',
        messages: received,
      },
      sendServerFrames: {
        action: 'send',
        channel: { $ref: '#/channels/hub' },
        summary: 'Frames the server sends: room notices and messages to members, replies and errors to the sender.',
        messages: sent,
      },
    },
    components: { schemas, messages },
  };
}
