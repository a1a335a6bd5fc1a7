/**
 * The protocol as a JSON Schema (2020-12), generated from the zod schemas the server
 * validates with ({@link ClientMessageSchemas}) and describes its own frames with
 * ({@link ServerFrameSchemas}). The package ships it as `roomwire/protocol.schema.json`.
 */
import { z } from 'zod';
import { ClientMessageSchemas, ServerFrameSchemas } from './protocol';

/** The `$defs` name of a frame: `client.join`, `server.ack`, ... */
export function frameDefName(side: 'client' | 'server', type: string): string {
  return `${side}.${type}`;
}

/** A JSON Schema document or subschema, as plain JSON. */
export type JsonSchema = Record<string, unknown>;

// 'input' for both sides: a strict object (server frames) gets `additionalProperties: false`
// either way, while a plain one (client frames, `data`) stays open, as the server reads it.
function convert(schema: z.ZodType, target: 'draft-2020-12' | 'draft-7'): JsonSchema {
  const out = z.toJSONSchema(schema, { io: 'input', target, unrepresentable: 'throw' }) as JsonSchema;
  delete out.$schema;
  return out;
}

/**
 * Every frame of the protocol as a JSON Schema, one entry per frame: the client frames as
 * the server accepts them (unknown extra fields allowed), the server frames exactly as it
 * sends them (no other field).
 *
 * @param target - the JSON Schema dialect of the entries. @default 'draft-2020-12'
 */
export function frameJsonSchemas(target: 'draft-2020-12' | 'draft-7' = 'draft-2020-12'): Record<string, JsonSchema> {
  const defs: Record<string, JsonSchema> = {};
  for (const [type, schema] of Object.entries(ClientMessageSchemas)) defs[frameDefName('client', type)] = convert(schema, target);
  for (const [type, schema] of Object.entries(ServerFrameSchemas)) defs[frameDefName('server', type)] = convert(schema, target);
  return defs;
}

/**
 * The JSON Schema (2020-12) of roomwire's wire protocol: its root accepts exactly the frames
 * of the protocol, client and server, and `$defs` holds one entry per frame
 * (`client.join`, ..., `server.error`). Generated from the zod schemas, so it cannot drift
 * from what the server checks and sends. The same document is in the package as
 * `roomwire/protocol.schema.json`.
 *
 * String request ids are limited to 64 UTF-16 code units; JSON Schema's `maxLength`
 * counts code points, so the schema alone lets through a few ids of astral characters
 * the server refuses.
 *
 * @example
 * ```ts
 * import Ajv2020 from 'ajv/dist/2020';
 * import { protocolJsonSchema } from 'roomwire';
 *
 * const validate = new Ajv2020().compile(protocolJsonSchema());
 * validate({ type: 'join', room: 'lobby' }); // true
 * ```
 */
export function protocolJsonSchema(): JsonSchema {
  const defs = frameJsonSchemas();
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'urn:roomwire:protocol',
    title: 'roomwire wire protocol',
    description: 'Every frame a roomwire client sends (client.*) or a roomwire server sends (server.*): one JSON object per WebSocket text frame.',
    anyOf: Object.keys(defs).map((name) => ({ $ref: `#/$defs/${name}` })),
    $defs: defs,
  };
}
