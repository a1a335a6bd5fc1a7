/**
 * The machine-readable protocol: the JSON Schema generated from the zod schemas accepts
 * exactly the protocol's frames, and the AsyncAPI document built from the same source is
 * valid AsyncAPI 3.0 (by @asyncapi/parser) and is the one checked in as docs/asyncapi.yaml.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Parser } from '@asyncapi/parser';
import Ajv2020 from 'ajv/dist/2020';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { CLIENT_MESSAGE_TYPES, ServerFrameSchemas, frameJsonSchemas, protocolJsonSchema } from '../../src/index';
import { encodeAck, encodeAuth, encodeError, encodeMembership, encodeMessage, encodePong, encodeReconnect, encodeUserList, identityFragment } from '../../src/core/protocol';
// @ts-expect-error plain JavaScript module of the build
import { asyncApiDocument } from '../../scripts/asyncapi.mjs';

const ROOT = path.resolve(__dirname, '../..');
const schema = protocolJsonSchema();
const ajv = new Ajv2020({ strict: true, allErrors: true });
const validate = ajv.compile(schema);
const serverOnly = ajv.compile({ anyOf: Object.keys(ServerFrameSchemas).map((t) => ({ $ref: `urn:roomwire:protocol#/$defs/server.${t}` })) });

const T = 1_767_225_600;
const me = identityFragment('u1', 'Ann');

describe('the JSON Schema of the protocol', () => {
  it('has one $defs entry per frame, client and server, and a root that refers to each', () => {
    const defs = Object.keys(schema.$defs as object);
    expect(defs).toEqual([...CLIENT_MESSAGE_TYPES.map((t) => `client.${t}`), ...Object.keys(ServerFrameSchemas).map((t) => `server.${t}`)]);
    expect(schema.anyOf).toEqual(defs.map((d) => ({ $ref: `#/$defs/${d}` })));
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
  });

  it('accepts every frame the server encodes, and the server-frame part accepts nothing else', () => {
    const frames = [
      encodeMembership('join', 'lobby', me, T),
      encodeMembership('leave', 'lobby', me, T),
      encodeMessage('lobby', 'hi', undefined, me, T),
      encodeMessage('lobby', 'hi', '{"k":[1,{"x":null}]}', me, T),
      encodeUserList('lobby', ['Ann', 'Bob'], T),
      encodeUserList('lobby', [], T, 'list-1'),
      encodePong(T),
      encodePong(T, 0),
      encodeAuth(T + 60, T),
      encodeAuth(undefined, T, 'a'),
      encodeAck('j', 'lobby', T),
      encodeAck(2 ** 53 - 1, 'lobby', T),
      encodeError('rate_limited', undefined, T),
      encodeError('invalid_room', 'bad room!', T, 'x'),
      encodeReconnect(0, T),
      encodeReconnect(30_000, T),
    ].map((t) => JSON.parse(t) as unknown);
    for (const f of frames) {
      expect({ f, ok: serverOnly(f), errors: serverOnly.errors ?? null }).toEqual({ f, ok: true, errors: null });
      expect(validate(f)).toBe(true);
    }
    const notServerFrames = [
      { type: 'join', room: 'lobby' }, // a client join
      { type: 'join', room: 'lobby', user_id: 'u1', username: 'Ann', timestamp: T, extra: 1 },
      { type: 'message', room: 'lobby', content: 'hi', user_id: 'u1', username: 'Ann', timestamp: T, data: null },
      { type: 'ack', room: 'lobby', timestamp: T },
      { type: 'error', content: 'x', data: { code: 'nope' }, timestamp: T },
      { type: 'pong', timestamp: -1 },
      { type: 'user_list', room: 'bad room', data: [], timestamp: T },
      { type: 'reconnect', data: { delay_ms: 5 } }, // no timestamp
      { type: 'reconnect', data: { delay_ms: -1 }, timestamp: T },
      { type: 'reconnect', data: { delay_ms: 1.5 }, timestamp: T },
      { type: 'reconnect', data: { delay_ms: 5, why: 'deploy' }, timestamp: T },
    ];
    for (const f of notServerFrames) expect({ f, ok: serverOnly(f) }).toEqual({ f, ok: false });
  });

  it('accepts the client frames the server accepts, unknown extra fields included, and refuses malformed ones', () => {
    const good = [
      { type: 'join', room: 'lobby' },
      { type: 'join', room: 'a:b.c-d_e', id: 'r1', extra: [1] },
      { type: 'message', room: 'lobby', content: '', data: { __proto__: 1 } },
      { type: 'ping', id: 0 },
      { type: 'pong' },
      { type: 'user_list', room: 'x' },
      { type: 'auth', data: { token: 't' }, id: 9 },
    ];
    for (const f of good) expect({ f, ok: validate(f) }).toEqual({ f, ok: true });
    const bad = [
      {},
      { type: 'shout' },
      { type: 'join' },
      { type: 'join', room: 5 },
      { type: 'join', room: 'bad room' },
      { type: 'join', room: '' },
      { type: 'ping', id: -1 },
      { type: 'ping', id: 1.5 },
      { type: 'ping', id: '' },
      { type: 'ping', id: 'x'.repeat(65) },
      { type: 'message', room: 'r', content: 'x', data: [] },
      { type: 'auth', data: {} },
      [],
      'join',
    ];
    for (const f of bad) expect({ f, ok: validate(f) }).toEqual({ f, ok: false });
  });

  it('is the document shipped as dist/protocol.schema.json when the build ran', () => {
    let shipped: unknown;
    try {
      shipped = JSON.parse(readFileSync(path.join(ROOT, 'dist/protocol.schema.json'), 'utf8'));
    } catch {
      return; // no build yet; the packed-package test checks the shipped file
    }
    expect(shipped).toEqual(schema);
  });
});

describe('the AsyncAPI document', () => {
  const doc = asyncApiDocument('0.0.0-test', frameJsonSchemas('draft-7')) as Record<string, unknown>;

  it('is valid AsyncAPI 3.0, with one message per frame', async () => {
    const { document, diagnostics } = await new Parser().parse(doc as never);
    const errors = diagnostics.filter((d) => d.severity === 0).map((d) => `${d.path.join('.')}: ${d.message}`);
    expect(errors).toEqual([]);
    expect(document?.version()).toBe('3.0.0');
    expect(document?.allMessages().all().length).toBe(CLIENT_MESSAGE_TYPES.length + Object.keys(ServerFrameSchemas).length);
    expect(document?.operations().all().map((o) => [o.id(), o.action(), o.messages().all().length])).toEqual([
      ['receiveClientFrames', 'receive', CLIENT_MESSAGE_TYPES.length],
      ['sendServerFrames', 'send', Object.keys(ServerFrameSchemas).length],
    ]);
  });

  it('is what docs/asyncapi.yaml holds (regenerate with npm run build)', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const expected = stringify(asyncApiDocument(pkg.version, frameJsonSchemas('draft-7')), { lineWidth: 0, aliasDuplicateObjects: false });
    const file = readFileSync(path.join(ROOT, 'docs/asyncapi.yaml'), 'utf8');
    expect(file.slice(file.indexOf('\n') + 1)).toBe(expected);
  });
});
