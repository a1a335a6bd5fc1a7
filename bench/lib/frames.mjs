// @ts-check
/**
 * The costly (and the cheap) client frames of the hardening scenarios: the texts a
 * client can send that are valid roomwire `message` or `join` frames, built to a given
 * size. The large ones are all padded to the same length (`content` takes the rest), so
 * their costs compare frame for frame.
 */

/** Length of every large frame, bytes (under the 70,000 WEBSOCKET_MAX_MESSAGE_SIZE the scenarios set). */
export const LARGE_FRAME_BYTES = 65_000;

/**
 * `{"type":"message","room":<room>,"content":<pad>,"data":<data>}` padded to `size` bytes
 * through `content` (ASCII only, so characters are bytes).
 * @param {string} room
 * @param {string | undefined} dataJson the JSON text of `data`, or undefined for none
 * @param {number} size
 */
function padded(room, dataJson, size) {
  const head = `{"type":"message","room":"${room}","content":"`;
  const tail = dataJson === undefined ? '"}' : `","data":${dataJson}}`;
  const pad = size - head.length - tail.length;
  if (pad < 1) throw new Error(`frame data of ${dataJson?.length} bytes does not fit in ${size} bytes`);
  return `${head}${'x'.repeat(pad)}${tail}`;
}

/**
 * `data` with `keys` small keys (base-36 numbers, 1 to 3 characters, each holding 0).
 * @param {number} keys
 */
export function manyKeysData(keys) {
  /** @type {string[]} */
  const parts = [];
  for (let i = 0; i < keys; i++) parts.push(`"${i.toString(36)}":0`);
  return `{${parts.join(',')}}`;
}

/**
 * A tree `width` wide and `depth` deep, keys a, b, c..., leaves 0.
 * @param {number} width
 * @param {number} depth
 * @returns {string}
 */
function tree(width, depth) {
  if (depth === 0) return '0';
  const child = tree(width, depth - 1);
  /** @type {string[]} */
  const parts = [];
  for (let i = 0; i < width; i++) parts.push(`"${String.fromCharCode(97 + i)}":${child}`);
  return `{${parts.join(',')}}`;
}

/**
 * The frames of the `frames` scenario, by name. The large ones are {@link LARGE_FRAME_BYTES}
 * bytes; `room` is the room they name.
 * @param {string} room
 * @returns {{ name: string, describe: string, text: string }[]}
 */
export function scenarioFrames(room) {
  const deep = 3000;
  const list = [
    { name: 'keys-8000', describe: 'message, data with 8,000 small keys', text: padded(room, manyKeysData(8000), LARGE_FRAME_BYTES) },
    { name: 'nested-6x5', describe: 'message, data a tree 6 wide and 5 deep (1,555 objects, 7,776 leaves)', text: padded(room, tree(6, 5), LARGE_FRAME_BYTES) },
    { name: 'deep-3000', describe: `message, data nested ${deep} objects deep`, text: padded(room, `${'{"a":'.repeat(deep)}0${'}'.repeat(deep)}`, LARGE_FRAME_BYTES) },
    { name: 'array-30000', describe: 'message, data {"list": [30,000 one-digit numbers]}', text: padded(room, `{"list":[${Array.from({ length: 30_000 }, (_, i) => i % 10).join(',')}]}`, LARGE_FRAME_BYTES) },
    { name: 'plain-64k', describe: 'message, a plain 65,000-byte frame (content only)', text: padded(room, undefined, LARGE_FRAME_BYTES) },
    { name: 'join-60', describe: 'join, 60 bytes', text: joinFrame(60) },
    { name: 'message-200', describe: 'message, 200 bytes (content only)', text: padded(room, undefined, 200) },
  ];
  return list;
}

/**
 * A `join` frame of exactly `size` bytes (the room name fills it; at most 64 characters).
 * @param {number} size
 */
export function joinFrame(size) {
  const base = '{"type":"join","room":""}'.length;
  const n = size - base;
  if (n < 1 || n > 64) throw new Error(`no join frame of ${size} bytes`);
  return `{"type":"join","room":"${'j'.repeat(n)}"}`;
}

/**
 * The 8,000-key message to `room`, {@link LARGE_FRAME_BYTES} long.
 * @param {string} room
 */
export function keysFrame(room) {
  return padded(room, manyKeysData(8000), LARGE_FRAME_BYTES);
}

/**
 * The plain message to `room` (content only), `size` bytes long.
 * @param {string} room
 * @param {number} [size]
 */
export function plainFrame(room, size = LARGE_FRAME_BYTES) {
  return padded(room, undefined, size);
}
