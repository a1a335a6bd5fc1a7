/**
 * The four endpoints under the base path `B` (docs/protocol.md section 1): `B`, `B/{room}`,
 * `B/auth`, `B/auth/{room}`. One trailing slash is ignored and the query string never
 * changes which route matches.
 */
import { isValidRoomName } from './protocol';

/** A request path under the base path, classified. */
export interface Route {
  /** `invalid` answers 404: no endpoint matches, or the room name is not valid. */
  readonly kind: 'endpoint' | 'invalid';
  /** True for `B/auth` and `B/auth/{room}`. */
  readonly auth: boolean;
  /** The URL-decoded room to join on connect. */
  readonly room: string | undefined;
  /** The request's query string without the `?` (empty when none). */
  readonly search: string;
  /** For `invalid`: what is wrong, in words (the 404's body). */
  readonly problem?: string;
}

const INVALID = (search: string, problem: string): Route => ({ kind: 'invalid', auth: false, room: undefined, search, problem });

const ROOM_RULE = 'room names are 1 to 64 characters from A-Z a-z 0-9 _ - . :';

function badRoom(search: string, room: string): Route {
  const shown = room.length > 80 ? `${room.slice(0, 80)}…` : room;
  return INVALID(search, `the room name ${JSON.stringify(shown)} is invalid: ${ROOM_RULE}`);
}

/**
 * Classify `url` (a request target such as `/ws/lobby?token=…`) against the base path.
 * Returns undefined when the path is outside the base path: not the hub's.
 */
export function matchRoute(base: string, url: string): Route | undefined {
  const q = url.indexOf('?');
  let path = q < 0 ? url : url.slice(0, q);
  const search = q < 0 ? '' : url.slice(q + 1);
  if (!path.startsWith('/')) {
    // Absolute-form request target (http://host/ws): keep the path exactly as sent. (The
    // URL parser would resolve `.` and `..` segments, routing it unlike the same path in
    // origin-form.)
    const authority = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(path);
    if (authority === null) return undefined;
    path = path.slice(authority[0].length) || '/';
  }
  if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
  const prefix = base === '/' ? '' : base;
  if (path === base || (base === '/' && path === '/')) return { kind: 'endpoint', auth: false, room: undefined, search };
  if (!path.startsWith(`${prefix}/`)) return undefined;
  const rest = path.slice(prefix.length + 1).split('/');
  let auth = false;
  let segment: string | undefined;
  if (rest.length === 1) {
    if (rest[0] === 'auth') return { kind: 'endpoint', auth: true, room: undefined, search };
    segment = rest[0];
  } else if (rest.length === 2 && rest[0] === 'auth') {
    auth = true;
    segment = rest[1];
  } else {
    const b = prefix === '' ? '' : prefix;
    return INVALID(search, `no endpoint at this path: the endpoints are ${b || '/'}, ${b}/{room}, ${b}/auth and ${b}/auth/{room}`);
  }
  let room: string;
  try {
    room = decodeURIComponent(segment as string);
  } catch {
    return badRoom(search, segment as string);
  }
  if (!isValidRoomName(room)) return badRoom(search, room);
  return { kind: 'endpoint', auth, room, search };
}
