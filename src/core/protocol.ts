/**
 * The wire protocol: zod schemas of every client message (the single source of the
 * message types), the frame checker that applies docs/protocol.md's check order, and the
 * encoders of every server frame.
 *
 * Server frames are built as strings directly: room names are validated to need no
 * escaping and each connection's identity is escaped once at connect time, so a
 * broadcast costs one string concatenation, never one per recipient.
 */
import { z } from 'zod';
import { WIRE_ERRORS, type WireErrorCode } from './errors';
import { compileShape, type ShapeCheck } from './validate';

/** Room names: 1 to 64 characters from `A-Z a-z 0-9 _ - . :`. */
export const ROOM_NAME_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;

/** zod schema of a valid room name. */
export const RoomNameSchema = z.string().regex(ROOM_NAME_PATTERN);

// The same rule as ROOM_NAME_PATTERN, checked as a length test and a search for any
// character outside the set: half the cost of the anchored pattern on a 35-character name
// (a test holds the two to the same answers).
const OUTSIDE_ROOM_ALPHABET = /[^\w.:-]/;

/** True when `room` is a valid room name (see {@link ROOM_NAME_PATTERN}). */
export function isValidRoomName(room: string): boolean {
  return room.length > 0 && room.length <= 64 && !OUTSIDE_ROOM_ALPHABET.test(room);
}

// `room` is only checked to be a string here: the naming rule answers with its own code
// (invalid_room) after the shape check (invalid_message), as docs/protocol.md section 3 orders them.
// The JSON Schema states the rule all the same (`pattern`), as a frame that breaks it is
// not one of the protocol's.
const room = z.string().meta({ description: 'room name: 1 to 64 characters from A-Z a-z 0-9 _ - . :', pattern: ROOM_NAME_PATTERN.source });

/**
 * `data`: any JSON object (not `null`, not an array). Its keys are not looked at: a
 * non-strict zod object checks the shape in constant time, where `z.record` would visit
 * every key and cost more than parsing the frame (an 8,000-key `data` took twice as long
 * to check as to parse). The object is forwarded as the client wrote it.
 */
const jsonObject = z.object({}).meta({ description: 'any JSON object; its members are forwarded as sent' }) as unknown as z.ZodType<Record<string, unknown>>;

/**
 * A request id (docs/protocol.md section 8): a string of 1 to 64 characters (UTF-16 code units,
 * JavaScript's `length`), or an integer from 0 to 2^53 − 1. The reply to a request carries
 * it back with the same JSON type and value.
 */
export const RequestIdSchema = z
  .union([
    // zod measures strings in code points; docs/protocol.md in UTF-16 code units (an emoji is 2).
    z
      .string()
      .min(1)
      .max(64)
      .refine((s) => s.length <= 64, { message: 'at most 64 UTF-16 code units' }),
    z.int().min(0).max(Number.MAX_SAFE_INTEGER),
  ])
  .meta({ description: 'request id: a string of 1 to 64 UTF-16 code units, or an integer from 0 to 2^53 − 1; its reply carries it back' });

/** A valid request id. */
export type RequestId = z.infer<typeof RequestIdSchema>;

const id = RequestIdSchema.optional();

/** A position in a room's stream (docs/protocol.md section 9). */
const offset = z.int().min(0).max(Number.MAX_SAFE_INTEGER);
const epoch = z.string().meta({ description: "names a room's stream; a new one starts when the stream is lost" });

/**
 * `since` of a `join` (docs/protocol.md section 9): the last message the client saw in the room,
 * to receive the ones it missed.
 */
export const SinceSchema = z
  .object({ offset: offset.meta({ description: 'the offset of the last message the client received from the room' }), epoch })
  .meta({ description: 'recover the messages after this position (docs/protocol.md section 9)' });

/** A valid `since`: where a rejoining client stopped. */
export type Since = z.infer<typeof SinceSchema>;

/**
 * zod schemas of the client-to-server messages, keyed by `type`. Unknown extra
 * fields are allowed and ignored. Every message may carry a request `id`.
 */
export const ClientMessageSchemas = {
  join: z.object({ type: z.literal('join'), room, since: SinceSchema.optional(), id }),
  leave: z.object({ type: z.literal('leave'), room, id }),
  message: z.object({
    type: z.literal('message'),
    room,
    content: z.string(),
    data: jsonObject.optional(),
    id,
  }),
  ping: z.object({ type: z.literal('ping'), id }),
  pong: z.object({ type: z.literal('pong'), id }),
  user_list: z.object({ type: z.literal('user_list'), room, id }),
  auth: z.object({ type: z.literal('auth'), data: z.object({ token: z.string() }), id }),
} as const;

/** The `type` values a client may send. */
export type ClientMessageType = keyof typeof ClientMessageSchemas;

/** Every client message type, in docs/protocol.md's order. */
export const CLIENT_MESSAGE_TYPES = Object.keys(ClientMessageSchemas) as ClientMessageType[];

/** A client message that passed its schema (extra fields may be present). */
export type ClientMessage = { [K in ClientMessageType]: z.infer<(typeof ClientMessageSchemas)[K]> }[ClientMessageType];

/**
 * The outcome of checking one inbound frame. `id` is the frame's request id when it is
 * valid (an error answering the frame carries it), else undefined.
 */
export type FrameCheck =
  | { readonly ok: true; readonly message: ClientMessage; readonly room: string | undefined; readonly id: RequestId | undefined }
  | {
      readonly ok: false;
      readonly code: WireErrorCode;
      readonly room: string | undefined;
      readonly id: RequestId | undefined;
      /** What is wrong, in words, for the error's `content` (the field at fault, the known types). */
      readonly detail?: string;
    };

/** The `room` a frame names as a string, for echoing in error frames. */
export function namedRoom(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || !Object.hasOwn(value, 'room')) return undefined;
  const room = (value as { room: unknown }).room;
  return typeof room === 'string' ? room : undefined;
}


function isClientType(t: unknown): t is ClientMessageType {
  // A switch, not `t in schemas`: `__proto__` or `constructor` must not match.
  switch (t) {
    case 'join':
    case 'leave':
    case 'message':
    case 'ping':
    case 'pong':
    case 'user_list':
    case 'auth':
      return true;
    default:
      return false;
  }
}

// The schemas, compiled once into plain predicates (see validate.ts): checking a frame's
// shape must cost less than parsing it, whatever its size.
const SHAPES = Object.fromEntries(Object.entries(ClientMessageSchemas).map(([type, schema]) => [type, compileShape(schema)])) as Record<ClientMessageType, ShapeCheck>;
const isRequestId = compileShape(RequestIdSchema);

/** The frame's `id` when it is a valid request id (docs/protocol.md section 8), else undefined. */
function validId(obj: Record<string, unknown>): RequestId | undefined {
  if (!Object.hasOwn(obj, 'id')) return undefined;
  const v = obj.id;
  return isRequestId(v) ? (v as RequestId) : undefined;
}

const KNOWN_TYPES = `known types: ${CLIENT_MESSAGE_TYPES.join(', ')}`;

/** Why `type` is not a client message type, naming the known ones. */
function typeProblem(type: unknown): string {
  if (type === undefined) return `the message has no "type" (${KNOWN_TYPES})`;
  if (typeof type !== 'string') return `"type" must be a string (${KNOWN_TYPES})`;
  const shown = type.length > 32 ? `${type.slice(0, 32)}…` : type;
  return `${JSON.stringify(shown)} is not a message type (${KNOWN_TYPES})`;
}

const EXPECTED: Record<string, string> = { string: 'a string', object: 'a JSON object', number: 'a number', int: 'an integer' };
const ID_RULE = 'a string of 1 to 64 characters or an integer from 0 to 2^53 − 1';

/**
 * The first thing wrong with a message of a known type, naming the field (`"content" is
 * missing (a string)`). Only refused frames get here, so zod may take its time: it says
 * which field failed, the compiled check only whether one did.
 */
function shapeProblem(type: ClientMessageType, obj: Record<string, unknown>): string | undefined {
  const issue = ClientMessageSchemas[type].safeParse(obj).error?.issues[0];
  if (issue === undefined) return undefined;
  const path = issue.path.map(String).join('.');
  if (path === 'id') return `"id" must be ${ID_RULE}`;
  let value: unknown = obj;
  for (const key of issue.path) value = typeof value === 'object' && value !== null ? (value as Record<PropertyKey, unknown>)[key as PropertyKey] : undefined;
  const expected = issue.code === 'invalid_type' ? (EXPECTED[issue.expected] ?? issue.expected) : undefined;
  if (value === undefined) return `"${path}" is missing${expected === undefined ? '' : ` (${expected})`}`;
  return expected === undefined ? `"${path}" is not valid` : `"${path}" must be ${expected}`;
}

/**
 * Check one text frame in docs/protocol.md's order (section 3, orders 2 to 5): JSON
 * object, known type, schema (the request `id` included), room name. The stateful
 * checks (membership, limits, hooks) belong to the hub. A frame that is not JSON has no
 * id; an `unsupported_type` or any later failure carries the id when it is valid.
 *
 * The returned message is the parsed object itself, never a copy, so keys such as
 * `__proto__` inside `data` are carried as plain data and never reach a prototype.
 */
export function checkFrame(text: string): FrameCheck {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, code: 'invalid_json', room: undefined, id: undefined };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, code: 'invalid_json', room: undefined, id: undefined };
  }
  const obj = value as Record<string, unknown>;
  const type = Object.hasOwn(obj, 'type') ? obj.type : undefined;
  // What an error echoes (the room named, a valid id) is read only when there is an error.
  if (!isClientType(type)) return { ok: false, code: 'unsupported_type', room: namedRoom(obj), id: validId(obj), detail: typeProblem(type) };
  if (!SHAPES[type](obj)) return { ok: false, code: 'invalid_message', room: namedRoom(obj), id: validId(obj), detail: shapeProblem(type, obj) };
  const message = obj as ClientMessage;
  // The naming rule applies to the types that have a room (the shape made it a string); on
  // the others `room` is an unknown extra field and is ignored.
  if (type === 'join' || type === 'leave' || type === 'message' || type === 'user_list') {
    const room = obj.room as string;
    if (!isValidRoomName(room)) return { ok: false, code: 'invalid_room', room, id: message.id };
    return { ok: true, message, room, id: message.id };
  }
  return { ok: true, message, room: namedRoom(obj), id: message.id };
}

// ---------------------------------------------------------------------------------------
// Server frames: their schemas (what a client may rely on, exactly: no other field), then
// the encoders that write them. The schemas are not used to build frames (the encoders
// concatenate strings, once per broadcast); the end-to-end tests hold every frame the
// server sends to them, through the JSON Schema generated from them.

const timestamp = z.int().min(0).meta({ description: 'Unix time in seconds, set by the server' });
const userId = z.string().min(1).meta({ description: 'the JWT `sub`, or a random UUID for an anonymous connection' });
const username = z.string().min(1).meta({ description: 'display name: no control or bidirectional-override characters, at most 64 code points' });
const roomName = RoomNameSchema;

function membership<T extends 'join' | 'leave'>(type: T) {
  return z.strictObject({ type: z.literal(type), room: roomName, user_id: userId, username, timestamp });
}

/**
 * zod schemas of the frames the server sends, keyed by `type`. Each lists every field the
 * frame may have (no other appears), in the order the encoders write them.
 */
export const ServerFrameSchemas = {
  join: membership('join').meta({ description: 'a connection joined the room (sent to every member, the joiner included)' }),
  leave: membership('leave').meta({ description: 'a connection left the room or closed (sent to every member, the leaver included)' }),
  message: z
    .strictObject({
      type: z.literal('message'),
      room: roomName,
      content: z.string(),
      user_id: userId,
      username,
      timestamp,
      offset: offset.min(1).optional().meta({ description: "with history on: the message's position in its room's stream, 1 for the first and growing by 1 per message" }),
      data: jsonObject.optional(),
    })
    .meta({ description: 'a message to the room (sent to every member, the sender included); `data` exactly when the sender sent it, `offset` exactly when history is on' }),
  user_list: z
    .strictObject({ type: z.literal('user_list'), id: RequestIdSchema.optional(), room: roomName, data: z.array(username), timestamp })
    .meta({ description: "the room's users, each once, in the order they first joined (to the joiner, or in answer to user_list)" }),
  pong: z.strictObject({ type: z.literal('pong'), id: RequestIdSchema.optional(), timestamp }).meta({ description: 'the answer to ping' }),
  auth: z
    .strictObject({ type: z.literal('auth'), id: RequestIdSchema.optional(), data: z.strictObject({ exp: z.int().nullable() }), timestamp })
    .meta({ description: "a token refresh succeeded; `exp` is the new token's expiry (Unix seconds) or null" }),
  ack: z
    .strictObject({
      type: z.literal('ack'),
      id: RequestIdSchema,
      room: roomName,
      offset: offset.optional().meta({ description: "with history on: for a message, its offset; for a join, the offset of the last message the joiner has received from the room (0 for a room with no message yet)" }),
      epoch: epoch.optional(),
      recovered: z.boolean().optional().meta({ description: 'for a join that carried since: whether every message after it was delivered before this ack' }),
      timestamp,
    })
    .meta({ description: 'the reply to a join, leave or message that carried an id, after every other frame it caused for the sender' }),
  error: z
    .strictObject({
      type: z.literal('error'),
      content: z.string(),
      data: z.strictObject({ code: z.enum(Object.keys(WIRE_ERRORS) as [WireErrorCode, ...WireErrorCode[]]) }),
      room: z.string().optional(),
      id: RequestIdSchema.optional(),
      timestamp,
    })
    .meta({ description: 'a frame was refused; nothing changed. `room` when the frame named one (not for rate_limited), `id` when it had a valid one' }),
  reconnect: z
    .strictObject({
      type: z.literal('reconnect'),
      data: z.strictObject({
        delay_ms: z.int().min(0).meta({ description: 'milliseconds to wait before reconnecting, drawn uniformly from 0 to the drain window' }),
      }),
      timestamp,
    })
    .meta({ description: 'the server is draining (docs/protocol.md section 4): sent just before the 1001 close frame, saying how long the client should wait before it reconnects' }),
} as const;

/** The `type` values of server frames. */
export type ServerFrameType = keyof typeof ServerFrameSchemas;

/** A frame the server sends. */
export type ServerFrame = { [K in ServerFrameType]: z.infer<(typeof ServerFrameSchemas)[K]> }[ServerFrameType];

/**
 * One server frame, serialized once and shared by every recipient. A transport may
 * cache its own encoding (for `ws`, the complete WebSocket frame) in {@link Outbound.frame}
 * so a broadcast is framed once too.
 */
export class Outbound {
  /**
   * The complete unmasked WebSocket text frame of {@link Outbound.text}, cached by the first
   * transport that sends it. Every transport that uses this field must store exactly that
   * encoding (roomwire/node does); a transport needing another one keeps its own cache.
   */
  frame: Uint8Array | undefined = undefined;

  constructor(
    /** The JSON text of the frame. */
    readonly text: string,
    /** A `message` frame's offset in its room's stream (history on), else 0. */
    readonly offset = 0,
  ) {}
}

/**
 * A `message` frame with history on, before its offset is known: the frame is
 * `head + offset + tail`. The broker that assigns the offset (in memory, or a Redis script)
 * joins them, so the frame stored and the one delivered are the same text.
 */
export interface MessageParts {
  /** Everything up to `"offset":`. */
  readonly head: string;
  /** Everything after the offset's digits. */
  readonly tail: string;
}

/** The `"user_id":…,"username":…` fragment of a user, escaped once per connection. */
export function identityFragment(userId: string, username: string): string {
  return `"user_id":${JSON.stringify(userId)},"username":${JSON.stringify(username)}`;
}

/** `{"type":"join"|"leave","room","user_id","username","timestamp"}`. `room` must be a valid name. */
export function encodeMembership(type: 'join' | 'leave', room: string, identity: string, timestamp: number): string {
  return `{"type":"${type}","room":"${room}",${identity},"timestamp":${timestamp}}`;
}

/**
 * The JSON text of the top-level member `key` of the JSON object `text`, exactly as
 * written (the last one when the key repeats, as `JSON.parse` takes), or undefined.
 * `text` must be valid JSON: it was parsed already. Forwarding a client's `data` as this
 * slice costs a scan that skips string bodies with `indexOf`, where serializing the
 * parsed object again would cost about half of parsing it (and overflow the stack for
 * deep nesting).
 */
export function rawMember(text: string, key: string): string | undefined {
  const n = text.length;
  let i = text.indexOf('{') + 1;
  let found: string | undefined;
  const skipSpace = () => {
    let c = text.charCodeAt(i);
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = text.charCodeAt(++i);
  };
  // `i` is at an opening quote; leaves `i` just after the closing one.
  const skipString = () => {
    for (;;) {
      const q = text.indexOf('"', i + 1);
      if (q < 0) {
        i = n;
        return;
      }
      let slashes = 0;
      while (text.charCodeAt(q - 1 - slashes) === 0x5c) slashes++;
      i = q;
      if ((slashes & 1) === 0) break;
    }
    i++;
  };
  const skipValue = () => {
    let depth = 0;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        skipString();
        if (depth === 0) return;
        continue;
      }
      if (c === 0x7b || c === 0x5b) {
        depth++;
      } else if (c === 0x7d || c === 0x5d) {
        if (depth === 0) return; // the end of the enclosing object
        if (--depth === 0) {
          i++;
          return;
        }
      } else if (c === 0x2c && depth === 0) {
        return;
      }
      i++;
    }
  };
  for (;;) {
    skipSpace();
    if (text.charCodeAt(i) !== 0x22) return found;
    const keyStart = i;
    skipString();
    const raw = text.slice(keyStart + 1, i - 1);
    const name = raw.includes('\\') ? (JSON.parse(`"${raw}"`) as string) : raw;
    skipSpace();
    i++; // colon
    skipSpace();
    const valueStart = i;
    skipValue();
    if (name === key) found = text.slice(valueStart, i).trimEnd();
    skipSpace();
    if (text.charCodeAt(i) !== 0x2c) return found;
    i++;
  }
}

/**
 * `{"type":"message","room","content","user_id","username","timestamp"}` plus `data`
 * when given: `dataJson` is the JSON text of the `data` object (for a client's message,
 * its own text of it; see {@link rawMember}).
 */
export function encodeMessage(room: string, content: string, dataJson: string | undefined, identity: string, timestamp: number): string {
  const tail = dataJson === undefined ? '' : `,"data":${dataJson}`;
  return `{"type":"message","room":"${room}","content":${JSON.stringify(content)},${identity},"timestamp":${timestamp}${tail}}`;
}

/** {@link encodeMessage} with an `offset` to come between `timestamp` and `data` (history on). */
export function encodeMessageParts(room: string, content: string, dataJson: string | undefined, identity: string, timestamp: number): MessageParts {
  return {
    head: `{"type":"message","room":"${room}","content":${JSON.stringify(content)},${identity},"timestamp":${timestamp},"offset":`,
    tail: dataJson === undefined ? '}' : `,"data":${dataJson}}`,
  };
}

/** `,"id":<id>` for a reply to a request with an id, else nothing. */
function idField(id: RequestId | undefined): string {
  return id === undefined ? '' : `,"id":${typeof id === 'number' ? id : JSON.stringify(id)}`;
}

/** `{"type":"user_list","id"?,"room","data":[usernames],"timestamp"}`. */
export function encodeUserList(room: string, usernames: readonly string[], timestamp: number, id?: RequestId): string {
  return `{"type":"user_list"${idField(id)},"room":"${room}","data":${JSON.stringify(usernames)},"timestamp":${timestamp}}`;
}

/** `{"type":"pong","id"?,"timestamp"}`. */
export function encodePong(timestamp: number, id?: RequestId): string {
  return `{"type":"pong"${idField(id)},"timestamp":${timestamp}}`;
}

/** `{"type":"auth","id"?,"data":{"exp":<seconds or null>},"timestamp"}`. */
export function encodeAuth(exp: number | undefined, timestamp: number, id?: RequestId): string {
  return `{"type":"auth"${idField(id)},"data":{"exp":${exp === undefined ? 'null' : exp}},"timestamp":${timestamp}}`;
}

/** What an `ack` says about the room's stream (docs/protocol.md section 9). */
export interface AckStream {
  /** The offset (history on), else undefined. */
  readonly offset?: number | undefined;
  /** The room's epoch (history on), else undefined. */
  readonly epoch?: string | undefined;
  /** For a join that carried `since`: whether it was recovered. */
  readonly recovered?: boolean | undefined;
}

/** `{"type":"ack","id","room","offset"?,"epoch"?,"recovered"?,"timestamp"}`: the reply to a `join`, `leave` or `message` with an id. */
export function encodeAck(id: RequestId, room: string, timestamp: number, stream?: AckStream): string {
  let extra = '';
  if (stream !== undefined) {
    if (stream.offset !== undefined) extra += `,"offset":${stream.offset}`;
    if (stream.epoch !== undefined) extra += `,"epoch":${JSON.stringify(stream.epoch)}`;
    if (stream.recovered !== undefined) extra += `,"recovered":${stream.recovered}`;
  }
  return `{"type":"ack"${idField(id)},"room":"${room}"${extra},"timestamp":${timestamp}}`;
}

/** `{"type":"reconnect","data":{"delay_ms"},"timestamp"}`: sent just before a drain's close frame. */
export function encodeReconnect(delayMs: number, timestamp: number): string {
  return `{"type":"reconnect","data":{"delay_ms":${delayMs}},"timestamp":${timestamp}}`;
}

/** The `content` of an `error` frame: the code's text, and what exactly when known. */
export function errorContent(code: WireErrorCode, detail?: string): string {
  return detail === undefined ? WIRE_ERRORS[code] : `${WIRE_ERRORS[code]}: ${detail}`;
}

/**
 * `{"type":"error","content","data":{"code"},"room"?,"id"?,"timestamp"}`; `room` is echoed
 * escaped; `detail` (the field at fault, the known types) extends `content`.
 */
export function encodeError(code: WireErrorCode, room: string | undefined, timestamp: number, id?: RequestId, detail?: string): string {
  const r = room === undefined ? '' : `,"room":${JSON.stringify(room)}`;
  const content = detail === undefined ? `"${WIRE_ERRORS[code]}"` : JSON.stringify(errorContent(code, detail));
  return `{"type":"error","content":${content},"data":{"code":"${code}"}${r}${idField(id)},"timestamp":${timestamp}}`;
}
