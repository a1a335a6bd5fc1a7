/**
 * `roomwire/client`: the typed client of a roomwire hub, for browsers and Node. It
 * connects, joins rooms, sends and answers with promises (request ids and acks, docs/protocol.md
 * section 8), reconnects with full-jitter backoff, joins its rooms again after every
 * reconnect, recovers the messages a room sent meanwhile when the hub keeps history
 * (docs/recovery.md), and refreshes its token in-band before it expires. It imports no zod, no
 * `ws` and nothing Node-only: give it `WebSocket` from `ws` on Node 20; browsers and
 * Node ≥ 22 have a global one.
 *
 * @packageDocumentation
 * @module roomwire/client
 */
import { RoomwireError, type ErrorCode } from '../core/errors';
import type { RequestId, ServerFrame } from '../core/protocol';

export { RoomwireError };
export type { ErrorCode, RequestId, ServerFrame };

/** The connection state of a {@link RoomwireClient}. */
export type ClientState = 'disconnected' | 'connecting' | 'connected' | 'closed';

/** A `message` frame as members receive it. */
export type MessageFrame = Extract<ServerFrame, { type: 'message' }>;
/** A `join` or `leave` notice. */
export type PresenceFrame = Extract<ServerFrame, { type: 'join' | 'leave' }>;
/** The server's answer to an in-band token refresh. */
export type AuthFrame = Extract<ServerFrame, { type: 'auth' }>;

/** What the `state` event carries. */
export interface StateChange {
  readonly state: ClientState;
  /** The close code of the connection that ended, when one did. */
  readonly code?: number;
  /** Its close reason. */
  readonly reason?: string;
}

/** The events of a {@link RoomwireClient}. */
export interface ClientEvents {
  /** A message in any joined room. */
  message: (message: MessageFrame) => void;
  /** Someone joined a room this client is in (its own joins included). */
  join: (notice: PresenceFrame) => void;
  /** Someone left a room this client is in (its own leaves included). */
  leave: (notice: PresenceFrame) => void;
  /** The connection state changed. */
  state: (change: StateChange) => void;
  /**
   * A reconnect is scheduled: the next attempt starts in `delayMs` (the jittered backoff,
   * or the server's `reconnect` delay). For a "reconnecting in 3 s" line.
   */
  reconnecting: (info: { readonly delayMs: number }) => void;
  /** The token was refreshed in-band (no reconnect); `data.exp` is the new expiry. */
  auth: (reply: AuthFrame) => void;
  /**
   * Something went wrong that no call is waiting for: an `error` frame without an id (such
   * as `rate_limited`), a failed token refresh, a refused connection (`ERR_REFUSED`).
   */
  error: (error: RoomwireError) => void;
}

/**
 * A position in a room's stream (docs/recovery.md): the offset of the last message the
 * client received from the room, and the epoch naming the stream that offset belongs to.
 * Only hubs that keep history (`WEBSOCKET_HISTORY_SIZE`) give rooms a position.
 */
export interface RoomPosition {
  /** The offset of the last message received (0 before the room's first message). */
  readonly offset: number;
  /** The room's stream; another epoch means the stream was lost and numbering began again. */
  readonly epoch: string;
}

/** Options of {@link RoomwireClient.join}. */
export interface JoinOptions {
  /**
   * Where the app stopped, to receive the messages sent after it: a
   * {@link Room.position} the app stored (in `localStorage`, say) before a page reload.
   * Used only when the client has no position of its own for the room (its own is never
   * older) and the room is not joined already. The join's answer is then a `recovered`
   * or a `gap` event of the room.
   */
  readonly since?: RoomPosition;
}

/**
 * What the `recovered` event of a room carries: a join with `since` (the automatic one
 * after a reconnect, or {@link JoinOptions.since}) received every message it had missed.
 * Those messages were emitted as `message` events, in order, before this event.
 */
export interface RecoveredEvent {
  /** The room. */
  readonly room: string;
  /** How many messages were replayed (0 when nothing was missed). */
  readonly missed: number;
  /** The room's position now: the offset of the last message received. */
  readonly offset: number;
  /** The room's epoch (the same as before). */
  readonly epoch: string;
}

/**
 * Why messages of a room may be missing ({@link GapEvent}):
 * - `not_recovered`: a join with `since` could not get back what was missed (the messages
 *   are older than the hub keeps, the stream was lost and a new epoch began, or the hub
 *   keeps no history for the room);
 * - `epoch`: while joined, the room's offsets began again: its stream was lost (its TTL
 *   passed, Redis lost it) and messages around that moment may be missing;
 * - `skipped`: a message arrived with an offset beyond the next one (a server fault: it
 *   should not happen).
 */
export type GapReason = 'not_recovered' | 'epoch' | 'skipped';

/**
 * What the `gap` event of a room carries: messages of the room may be missing, so the app
 * should reload what it shows from its own source of truth (its database, an HTTP API).
 * Never emitted for the first join of a room without `since` (nothing was missed).
 */
export interface GapEvent {
  /** The room. */
  readonly room: string;
  /** Why; see {@link GapReason}. */
  readonly reason: GapReason;
  /**
   * Where the client stood before the gap: the last offset it had and that stream's
   * epoch; undefined when it knew no epoch to recover from.
   */
  readonly since?: RoomPosition | undefined;
  /**
   * The offset the client is at now: for `not_recovered`, the room's latest (the next
   * live message has this offset + 1); for `epoch` and `skipped`, the message that
   * revealed the gap. Undefined when the hub gave none (no history for the room).
   */
  readonly offset?: number | undefined;
  /** The room's epoch now, when known (for `epoch`, it is learnt a moment later: see {@link Room.position}). */
  readonly epoch?: string | undefined;
}

/** The events of one room ({@link RoomwireClient.room}). */
export interface RoomEvents {
  /** A message in this room (recovered ones included, in order). */
  message: (message: MessageFrame) => void;
  /** Someone joined this room (this client included). */
  join: (notice: PresenceFrame) => void;
  /** Someone left this room (this client included). */
  leave: (notice: PresenceFrame) => void;
  /**
   * A join with `since` (after every reconnect, when the hub keeps history) got back every
   * message missed; they were emitted as `message` events just before.
   */
  recovered: (event: RecoveredEvent) => void;
  /** Messages of this room may be missing: reload the room's state from the app's source of truth. */
  gap: (event: GapEvent) => void;
}

/** The part of the standard `WebSocket` the client uses; `ws` and browsers' fit. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** A `WebSocket` constructor: the global one, or `WebSocket` from `ws`. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: object) => WebSocketLike;

/** Options of {@link createClient}. */
export interface ClientOptions {
  /**
   * The hub's WebSocket URL (`wss://example.com/ws`), or several, tried in turn: after a
   * connection fails or drops, the next one in the list is tried.
   */
  readonly url: string | readonly string[];
  /**
   * Called before each connection, and again before the token's `exp` (read from the JWT
   * payload; the client does not verify it) to refresh it in-band. Return `undefined` or
   * `null` to connect anonymously.
   */
  readonly getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** The WebSocket implementation. @default globalThis.WebSocket (pass `WebSocket` from `ws` on Node 20) */
  readonly WebSocket?: WebSocketConstructor;
  /**
   * Reconnect after a drop, waiting random(0, min(maxDelayMs, minDelayMs × 2^attempt)) ms
   * (full jitter, from the first retry), or `false` to stay disconnected.
   * @default { minDelayMs: 500, maxDelayMs: 20000 }
   */
  readonly reconnect?: { readonly minDelayMs?: number; readonly maxDelayMs?: number } | false;
  /** How long a call waits for its answer, the wait for a connection included. @default 10000 */
  readonly requestTimeoutMs?: number;
  /** Calls that may wait for a connection at once; more reject with `ERR_QUEUE_FULL`. @default 1000 */
  readonly maxQueued?: number;
}

type Listener = (...args: never[]) => void;

/** A minimal typed emitter: listeners live as long as the client, across reconnects. */
class Emitter<Events extends { [K in keyof Events]: Listener }> {
  private readonly listeners = new Map<keyof Events, Set<Listener>>();

  /** Add a listener; returns a function that removes it. Adding the same one twice keeps one. */
  on<E extends keyof Events>(event: E, listener: Events[E]): () => void {
    let set = this.listeners.get(event);
    if (set === undefined) this.listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => this.off(event, listener);
  }

  /** Remove a listener. */
  off<E extends keyof Events>(event: E, listener: Events[E]): void {
    this.listeners.get(event)?.delete(listener);
  }

  /** @internal */
  emit<E extends keyof Events>(event: E, ...args: Parameters<Events[E]>): void {
    const set = this.listeners.get(event);
    if (set === undefined) return;
    for (const l of [...set]) {
      try {
        (l as (...a: unknown[]) => void)(...args);
      } catch (err) {
        // A throwing listener must not break the client; surface it where it can be seen.
        setTimeout(() => {
          throw err;
        });
      }
    }
  }
}

/**
 * One room of a client: its listeners (kept across reconnects, registered once) and
 * whether the client wants to be in it. Get it with {@link RoomwireClient.room}.
 */
export class Room extends Emitter<RoomEvents> {
  /** @internal Whether the client should be a member (joined again after a reconnect). */
  wanted = false;
  /** @internal The join the server has acknowledged on the current connection. */
  joined = false;
  /** @internal Calls of `join()` waiting for the next acknowledged join. */
  waiters: Pending[] = [];
  /** @internal The last user list received for this room. */
  users: string[] = [];
  /** @internal The offset of the last message received; undefined while the room has no position (history off). */
  last: number | undefined = undefined;
  /** @internal The epoch `last` belongs to, when known. */
  epoch: string | undefined = undefined;
  /** @internal The offsets began again (a new epoch) and the new epoch is not known yet. */
  stale = false;
  /** @internal Messages received since the join on this connection was sent, before its ack (the replayed ones). */
  replayed = 0;

  constructor(
    private readonly client: RoomwireClient,
    /** The room name. */
    readonly name: string,
  ) {
    super();
  }

  /**
   * Where the client is in this room's stream: the offset of the last message received
   * and its epoch, or undefined when the hub keeps no history for the room (or the room's
   * new epoch is not known yet, a moment after a `gap` with reason `epoch`). Store it to
   * recover after a page reload: `join({ since: stored })`.
   */
  get position(): RoomPosition | undefined {
    if (this.last === undefined || this.epoch === undefined || this.stale) return undefined;
    return { offset: this.last, epoch: this.epoch };
  }

  /** Join this room; see {@link RoomwireClient.join}. */
  join(options?: JoinOptions): Promise<{ users: string[] }> {
    return this.client.join(this.name, options);
  }

  /** Leave this room; see {@link RoomwireClient.leave}. */
  leave(): Promise<void> {
    return this.client.leave(this.name);
  }

  /** Send a message to this room; see {@link RoomwireClient.send}. */
  send(content: string, data?: Record<string, unknown>): Promise<void> {
    return this.client.send(this.name, content, data);
  }
}

interface Pending {
  readonly id: number;
  readonly frame: Record<string, unknown>;
  readonly resolve: (value: never) => void;
  readonly reject: (error: RoomwireError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Sent on the current connection (else waiting for one). */
  sent: boolean;
  /** Safe to send again after a reconnect (reads, joins); else rejected when the connection drops. */
  readonly again: boolean;
  /** A join: the `since` it was last sent with. */
  since?: RoomPosition | undefined;
  /** A join: sent for a room that had a position, so its ack says whether anything was lost. */
  resume?: boolean;
}

const OPEN = 1;

/** The seconds-since-epoch `exp` of a JWT, read without verification; undefined when absent or unreadable. */
function tokenExpiry(token: string): number | undefined {
  try {
    const part = token.split('.')[1] as string;
    const json = decodeURIComponent(
      atob(part.replace(/-/g, '+').replace(/_/g, '/'))
        .split('')
        .map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
        .join(''),
    );
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === 'number' ? exp : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A client of a roomwire hub. Create one with {@link createClient}; it connects at once
 * and keeps connecting until {@link RoomwireClient.close}.
 */
export class RoomwireClient extends Emitter<ClientEvents> {
  private readonly urls: readonly string[];
  private readonly Ws: WebSocketConstructor;
  private readonly minDelay: number;
  private readonly maxDelay: number;
  private readonly retry: boolean;
  private readonly timeoutMs: number;
  private readonly maxQueued: number;
  private readonly getToken: ClientOptions['getToken'];
  private readonly rooms = new Map<string, Room>();
  private readonly pending = new Map<number, Pending>();
  private ws: WebSocketLike | undefined;
  private current: ClientState = 'disconnected';
  private nextId = 1;
  private attempt = 0;
  private urlIndex = 0;
  private token: string | null | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  /** `delay_ms` of a `reconnect` frame, honoured once for the next reconnect. */
  private serverDelay: number | undefined;
  /** Who the server says this connection is, from its own first join notice. */
  private self: { readonly user_id: string; readonly username: string } | undefined;
  /** Why the last upgrade was refused, when the runtime tells (Node with `ws`). */
  private refusal: { status: number; retryAfter: number } | undefined;
  private readonly onOnline = (): void => {
    if (this.retryTimer === undefined) return;
    clearTimeout(this.retryTimer);
    this.schedule(Math.random() * this.minDelay);
  };

  /** @internal Use {@link createClient}. */
  constructor(options: ClientOptions) {
    super();
    const urls = typeof options.url === 'string' ? [options.url] : [...options.url];
    if (urls.length === 0 || urls.some((u) => typeof u !== 'string' || !/^wss?:\/\//i.test(u))) {
      throw new RoomwireError('ERR_INVALID_ARGUMENT', 'url must be a ws:// or wss:// URL, or a non-empty list of them');
    }
    const Ws = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (typeof Ws !== 'function') {
      throw new RoomwireError('ERR_INVALID_ARGUMENT', 'no WebSocket implementation: pass { WebSocket } (from the ws package on Node 20)');
    }
    const reconnect = options.reconnect ?? {};
    this.urls = urls;
    this.Ws = Ws;
    this.retry = reconnect !== false;
    this.minDelay = (reconnect !== false && reconnect.minDelayMs) || 500;
    this.maxDelay = Math.max(this.minDelay, (reconnect !== false && reconnect.maxDelayMs) || 20_000);
    this.timeoutMs = options.requestTimeoutMs ?? 10_000;
    this.maxQueued = options.maxQueued ?? 1000;
    this.getToken = options.getToken;
    const target = globalThis as { addEventListener?: (type: string, fn: () => void) => void };
    target.addEventListener?.('online', this.onOnline);
    void this.open();
  }

  /** The connection state. */
  get state(): ClientState {
    return this.current;
  }

  /**
   * Who the server says this connection is (`user_id`, `username`), known from the first
   * room it joins on the current connection; undefined before that. An anonymous client
   * gets a new identity on every connection.
   */
  get user(): { readonly user_id: string; readonly username: string } | undefined {
    return this.self;
  }

  /** The room `name`: its listeners and calls. Listeners added here survive reconnects. */
  room(name: string): Room {
    let room = this.rooms.get(name);
    if (room === undefined) this.rooms.set(name, (room = new Room(this, name)));
    return room;
  }

  /**
   * Join `room`; resolves with its users on the server's `ack`, and rejects with a
   * {@link RoomwireError} whose `code` is the wire code (`room_full`, `forbidden`,
   * `too_many_rooms`, `invalid_room`) or `ERR_TIMEOUT`. Joining a room already joined
   * changes nothing (one membership, one set of listeners) and resolves with a fresh user
   * list. After every reconnect the client joins its rooms again by itself.
   *
   * When the hub keeps history, the client remembers each room's {@link Room.position}
   * and every join after a reconnect asks for the messages missed meanwhile: they arrive
   * as `message` events, then the room emits `recovered`, or `gap` when they could not
   * all be had. `options.since` starts from a position the app stored (see
   * {@link JoinOptions.since}); it rejects with `ERR_INVALID_ARGUMENT` when it is not a
   * position.
   */
  join(room: string, options?: JoinOptions): Promise<{ users: string[] }> {
    const since = options?.since;
    if (since !== undefined && (typeof since !== 'object' || since === null || !Number.isSafeInteger(since.offset) || since.offset < 0 || typeof since.epoch !== 'string')) {
      return Promise.reject(new RoomwireError('ERR_INVALID_ARGUMENT', 'since must be { offset: an integer of at least 0, epoch: a string }'));
    }
    const r = this.room(room);
    r.wanted = true;
    if (since !== undefined && !r.joined && r.last === undefined) {
      r.last = since.offset;
      r.epoch = since.epoch;
      r.stale = false;
    }
    return new Promise<string[]>((resolve, reject) => {
      const p = this.track({ type: 'join', room }, resolve, reject, true);
      if (p === undefined) return;
      r.waiters.push(p);
      this.flush();
    }).then((users) => ({ users }));
  }

  /**
   * Leave `room`; resolves on the server's `ack` (at once while disconnected: there is
   * nothing to leave). The room's {@link Room.position} is forgotten: read it before to
   * store it.
   */
  leave(room: string): Promise<void> {
    const r = this.rooms.get(room);
    if (r !== undefined) {
      r.wanted = false;
      r.last = r.epoch = undefined;
      r.stale = false;
    }
    if (this.current !== 'connected' || r?.joined !== true) {
      if (r !== undefined) r.joined = false;
      return Promise.resolve();
    }
    r.joined = false;
    return this.request({ type: 'leave', room }, false).then(() => undefined);
  }

  /**
   * Send `content` (and `data`, a JSON object) to `room`; resolves on the server's `ack`,
   * after every member has been sent the message. Rejects with the wire code
   * (`not_in_room`, `forbidden`, `unavailable` when the hub keeps history and cannot reach
   * the room's stream now: the message was not sent; `rate_limited` does not apply: it
   * carries no id), `ERR_TIMEOUT`, or `ERR_CONNECTION_LOST` when the connection dropped
   * after sending (the message may or may not have gone out; it is not sent again).
   */
  send(room: string, content: string, data?: Record<string, unknown>): Promise<void> {
    const frame: Record<string, unknown> = { type: 'message', room, content };
    if (data !== undefined) frame.data = data;
    return this.request(frame, false).then(() => undefined);
  }

  /** The users of `room`, each once (the client must be in it). */
  users(room: string): Promise<string[]> {
    return this.request({ type: 'user_list', room }, true) as Promise<string[]>;
  }

  /** Round-trip time to the server, milliseconds (an application `ping`). */
  ping(): Promise<number> {
    const start = Date.now();
    return this.request({ type: 'ping' }, true).then(() => Date.now() - start);
  }

  /**
   * Close for good: no reconnect, every waiting call rejects with `ERR_CLOSED`, and the
   * state becomes `closed`.
   */
  close(): void {
    if (this.current === 'closed') return;
    clearTimeout(this.retryTimer);
    clearTimeout(this.refreshTimer);
    this.retryTimer = this.refreshTimer = undefined;
    (globalThis as { removeEventListener?: (type: string, fn: () => void) => void }).removeEventListener?.('online', this.onOnline);
    const ws = this.ws;
    this.ws = undefined;
    if (ws !== undefined) {
      ws.onclose = ws.onmessage = ws.onopen = null;
      // Not null: `ws` (Node) throws an 'error' event nobody listens to, and closing a socket
      // that is still connecting emits one.
      ws.onerror = () => {};
      try {
        ws.close(1000, 'client closed');
      } catch {
        // a socket still connecting cannot always be closed politely
      }
    }
    for (const p of [...this.pending.values()]) this.settle(p, new RoomwireError('ERR_CLOSED', 'the client was closed'));
    this.setState('closed');
  }

  // ---- requests ----------------------------------------------------------------------

  private request(frame: Record<string, unknown>, again: boolean): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.track(frame, resolve, reject, again) !== undefined) this.flush();
    });
  }

  /** Register a call: an id, a timeout; undefined when it was refused at once. */
  private track(frame: Record<string, unknown>, resolve: (v: never) => void, reject: (e: RoomwireError) => void, again: boolean): Pending | undefined {
    if (this.current === 'closed') {
      reject(new RoomwireError('ERR_CLOSED', 'the client was closed'));
      return undefined;
    }
    let waiting = 0;
    for (const p of this.pending.values()) if (!p.sent) waiting++;
    if (waiting >= this.maxQueued) {
      reject(new RoomwireError('ERR_QUEUE_FULL', `${waiting} calls are already waiting for the connection`));
      return undefined;
    }
    const id = this.nextId++;
    const p: Pending = { id, frame: { ...frame, id }, resolve, reject, timer: undefined, sent: false, again };
    p.timer = setTimeout(() => this.settle(p, new RoomwireError('ERR_TIMEOUT', `no answer to ${String(frame.type)} within ${this.timeoutMs} ms`)), this.timeoutMs);
    this.pending.set(id, p);
    return p;
  }

  /**
   * Send every call that waits, in order, when connected; with `joinsFirst` (a new
   * connection) the joins go first, so a message queued while disconnected finds its room.
   */
  private flush(joinsFirst = false): void {
    const ws = this.ws;
    if (this.current !== 'connected' || ws === undefined) return;
    for (const pass of joinsFirst ? [true, false] : [undefined]) {
      for (const p of this.pending.values()) {
        if (p.sent || (pass !== undefined && (p.frame.type === 'join') !== pass)) continue;
        const frame = p.frame.type === 'join' ? this.joinFrame(p) : p.frame;
        p.sent = true;
        ws.send(JSON.stringify(frame));
      }
    }
  }

  /**
   * The frame of a join about to be sent: with `since` when it joins the room on this
   * connection (no other join of it is on its way) and the room has a position.
   */
  private joinFrame(p: Pending): Record<string, unknown> {
    const room = this.rooms.get(p.frame.room as string);
    p.since = undefined;
    p.resume = false;
    if (room === undefined || room.joined || room.last === undefined || this.joining(room.name)) return p.frame;
    p.resume = true;
    if (room.epoch === undefined) return p.frame;
    p.since = { offset: room.last, epoch: room.epoch };
    return { ...p.frame, since: p.since };
  }

  /** End a call with a value or an error. */
  private settle(p: Pending, error: RoomwireError | undefined, value?: unknown): void {
    if (!this.pending.delete(p.id)) return;
    clearTimeout(p.timer);
    const frame = p.frame;
    if (frame.type === 'join') {
      const room = this.rooms.get(frame.room as string);
      if (room !== undefined) {
        room.waiters = room.waiters.filter((w) => w !== p);
        // A refused join is not joined again after a reconnect.
        if (error !== undefined && error.code !== 'ERR_TIMEOUT' && error.code !== 'ERR_CLOSED' && room.waiters.length === 0 && !room.joined) room.wanted = false;
      }
    }
    if (error === undefined) p.resolve(value as never);
    else p.reject(error);
  }

  // ---- the connection ----------------------------------------------------------------

  private setState(state: ClientState, code?: number, reason?: string): void {
    if (this.current === state && code === undefined) return;
    this.current = state;
    this.emit('state', code === undefined ? { state } : { state, code, reason: reason ?? '' });
  }

  private async open(): Promise<void> {
    if (this.current === 'closed') return;
    this.setState('connecting');
    this.refusal = undefined;
    let token: string | null | undefined;
    try {
      token = await this.getToken?.();
    } catch (err) {
      this.emit('error', new RoomwireError('ERR_REFUSED', `getToken failed: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
      return this.dropped(undefined, '');
    }
    // close() may have run while getToken was pending
    if ((this.current as ClientState) === 'closed') return;
    this.token = token;
    const base = this.urls[this.urlIndex % this.urls.length] as string;
    const Ws = this.Ws;
    // `ws` (Node) can send the token as a header, which stays out of access logs; a
    // browser's WebSocket cannot, so there it goes in the query.
    const nodeWs = typeof (Ws.prototype as { on?: unknown }).on === 'function';
    let url = base;
    let ws: WebSocketLike;
    try {
      if (token && nodeWs) {
        ws = new Ws(base, undefined, { headers: { Authorization: `Bearer ${token}` } });
      } else {
        if (token) url = `${base}${base.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
        ws = new Ws(url);
      }
    } catch (err) {
      this.emit('error', new RoomwireError('ERR_INVALID_ARGUMENT', `cannot open ${base}: ${(err as Error).message}`, { cause: err }));
      return this.dropped(undefined, '');
    }
    this.ws = ws;
    if (nodeWs) {
      // Node's ws reports why an upgrade was refused; browsers never do.
      (ws as unknown as { on(e: string, f: (req: unknown, res: { statusCode?: number; headers: Record<string, unknown>; resume?: () => void }) => void): void }).on(
        'unexpected-response',
        (_req, res) => {
          this.refusal = { status: res.statusCode ?? 0, retryAfter: Number(res.headers['retry-after']) || 0 };
          res.resume?.();
          (ws as unknown as { terminate(): void }).terminate();
        },
      );
    }
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.setState('connected');
      this.scheduleRefresh();
      // Rooms first, then the calls that waited, in the order they were made. A room the
      // server now refuses (full, forbidden) is reported and no longer joined.
      for (const room of this.rooms.values()) {
        if (!room.wanted || room.waiters.length > 0) continue;
        this.track({ type: 'join', room: room.name }, () => {}, (err) => this.emit('error', err), true);
      }
      this.flush(true);
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws || typeof event.data !== 'string') return;
      let frame: ServerFrame;
      try {
        frame = JSON.parse(event.data) as ServerFrame;
      } catch {
        return;
      }
      this.receive(frame);
    };
    ws.onerror = () => {
      // the close event follows and says the rest
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.dropped(event.code, event.reason);
    };
  }

  /** The connection ended (or never opened): settle what it carried, then reconnect or stop. */
  private dropped(code: number | undefined, reason: string): void {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    for (const room of this.rooms.values()) room.joined = false;
    this.self = undefined;
    for (const p of [...this.pending.values()]) {
      if (!p.sent) continue;
      if (p.again) p.sent = false;
      // A membership ends with its connection: a leave on its way is done.
      else if (p.frame.type === 'leave') this.settle(p, undefined, undefined);
      else this.settle(p, new RoomwireError('ERR_CONNECTION_LOST', `the connection dropped before the answer to ${String(p.frame.type)}`));
    }
    if (this.current === 'closed') return;
    this.setState('disconnected', code ?? 1006, reason);
    const refusal = this.refusal;
    if (refusal !== undefined) return void this.refused(refusal);
    if (!this.retry) return;
    this.urlIndex++;
    if (this.serverDelay !== undefined) {
      const delay = this.serverDelay;
      this.serverDelay = undefined;
      return this.schedule(delay);
    }
    this.schedule(this.jitter());
  }

  /** An upgrade was refused with an HTTP status (Node only). */
  private async refused(refusal: { status: number; retryAfter: number }): Promise<void> {
    const { status } = refusal;
    let fatal = status === 403 || status === 404;
    if (status === 401) {
      // Retry only with a token other than the one refused.
      const before = this.token;
      let next: string | null | undefined;
      try {
        next = await this.getToken?.();
      } catch {
        next = before;
      }
      fatal = !next || next === before;
    }
    if (fatal) {
      this.emit('error', new RoomwireError('ERR_REFUSED', `the server refused the connection with ${status}`, { status }));
      this.close();
      return;
    }
    if (!this.retry || this.current === 'closed') return;
    this.urlIndex++;
    this.schedule(Math.max(this.jitter(), refusal.retryAfter * 1000));
  }

  /** random(0, min(max, min × 2^attempt)), then one more attempt. */
  private jitter(): number {
    const ceiling = Math.min(this.maxDelay, this.minDelay * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.random() * ceiling;
  }

  private schedule(ms: number): void {
    clearTimeout(this.retryTimer);
    this.emit('reconnecting', { delayMs: ms });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.open();
    }, ms);
  }

  /** Refresh the token in-band a little before its `exp`. */
  private scheduleRefresh(): void {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    const token = this.token;
    if (!token || this.getToken === undefined) return;
    const exp = tokenExpiry(token);
    if (exp === undefined) return;
    const left = exp * 1000 - Date.now();
    // 10% of what is left, between 1 s and 60 s ahead of the expiry.
    const ahead = Math.min(60_000, Math.max(1000, left / 10));
    this.refreshTimer = setTimeout(() => void this.refresh(), Math.max(0, left - ahead));
  }

  private async refresh(): Promise<void> {
    let next: string | null | undefined;
    try {
      next = await this.getToken?.();
    } catch (err) {
      this.emit('error', new RoomwireError('unauthorized', `getToken failed: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
      return;
    }
    if (!next || next === this.token || this.current !== 'connected') return;
    try {
      const reply = (await this.request({ type: 'auth', data: { token: next } }, false)) as AuthFrame;
      this.token = next;
      this.scheduleRefresh();
      this.emit('auth', reply);
    } catch (err) {
      this.emit('error', err as RoomwireError);
    }
  }

  /** Whether a join of `room` was sent on this connection and is not answered yet. */
  private joining(room: string): boolean {
    for (const p of this.pending.values()) if (p.sent && p.frame.type === 'join' && p.frame.room === room) return true;
    return false;
  }

  // ---- room positions (history and recovery, docs/recovery.md) ---------------------------

  /**
   * A message of `room` arrived with `offset` (history on): move the room's position, and
   * report a gap when the offset is not the next one.
   */
  private follow(room: Room, offset: number | undefined): void {
    if (!room.joined) room.replayed++;
    if (typeof offset !== 'number') return;
    const last = room.last;
    room.last = offset;
    if (last !== undefined && offset === last + 1) return;
    if (last === undefined) {
      // No position yet (the join's ack carried none: the hub could not read the room's
      // stream then): follow from here, and ask for the epoch.
      return this.askEpoch(room);
    }
    const since = room.epoch === undefined || room.stale ? undefined : { offset: last, epoch: room.epoch };
    if (offset > last + 1) {
      room.emit('gap', { room: room.name, reason: 'skipped', since, offset, epoch: room.stale ? undefined : room.epoch });
      return;
    }
    // Numbering began again: a new epoch.
    if (room.epoch !== undefined) room.stale = true;
    room.emit('gap', { room: room.name, reason: 'epoch', since, offset, epoch: undefined });
    this.askEpoch(room);
  }

  /** Learn the epoch of a room this connection is in: a join of it is answered with no replay, and its ack names the epoch. */
  private askEpoch(room: Room): void {
    if (room.joined && this.track({ type: 'join', room: room.name }, () => {}, () => {}, true) !== undefined) this.flush();
  }

  /** The ack of a join that made this connection a member of `room`. */
  private joined(room: Room, p: Pending, ack: Extract<ServerFrame, { type: 'ack' }>): void {
    const { offset, epoch, recovered } = ack;
    const replayed = room.replayed;
    room.replayed = 0;
    room.stale = false;
    if (typeof offset === 'number' && typeof epoch === 'string') {
      room.last = offset;
      room.epoch = epoch;
    } else {
      room.last = room.epoch = undefined;
    }
    if (recovered === true && typeof offset === 'number' && typeof epoch === 'string') {
      room.emit('recovered', { room: room.name, missed: replayed, offset, epoch });
    } else if (p.resume === true || recovered === false) {
      room.emit('gap', { room: room.name, reason: 'not_recovered', since: p.since, offset, epoch });
    }
  }

  /** The ack of a join of a room already joined: it names the room's epoch (no replay). */
  private rejoined(room: Room, ack: Extract<ServerFrame, { type: 'ack' }>): void {
    const { offset, epoch } = ack;
    if (typeof offset !== 'number' || typeof epoch !== 'string') return;
    if (room.last === undefined) {
      room.last = offset;
    } else if (room.epoch !== undefined && !room.stale && epoch !== room.epoch && room.last > 0) {
      // The stream changed with no message to tell yet: the new one's messages are to come.
      const since = { offset: room.last, epoch: room.epoch };
      room.last = 0;
      room.epoch = epoch;
      room.emit('gap', { room: room.name, reason: 'epoch', since, offset: 0, epoch });
      return;
    }
    room.epoch = epoch;
    room.stale = false;
  }

  // ---- frames ------------------------------------------------------------------------

  private receive(frame: ServerFrame): void {
    const id = 'id' in frame ? frame.id : undefined;
    const p = typeof id === 'number' ? this.pending.get(id) : undefined;
    switch (frame.type) {
      case 'message':
      case 'join':
      case 'leave': {
        // Nothing of a room reaches a connection before its own join notice: the first
        // notice of a room it is joining is its own.
        if (frame.type === 'join' && this.self === undefined && this.rooms.get(frame.room)?.joined === false && this.joining(frame.room)) {
          this.self = { user_id: frame.user_id, username: frame.username };
        }
        const room = this.rooms.get(frame.room);
        if (frame.type === 'message' && room !== undefined) this.follow(room, frame.offset);
        this.emit(frame.type as 'message', frame as never);
        room?.emit(frame.type as 'message', frame as never);
        return;
      }
      case 'user_list': {
        const room = this.rooms.get(frame.room);
        if (room !== undefined) room.users = frame.data;
        if (p !== undefined) this.settle(p, undefined, frame.data);
        return;
      }
      case 'ack': {
        if (p === undefined) return;
        if (p.frame.type === 'join') {
          const room = this.room(frame.room);
          const fresh = !room.joined;
          room.joined = true;
          if (fresh) this.joined(room, p, frame);
          else this.rejoined(room, frame);
          const users = room.users;
          this.settle(p, undefined, users);
          // Every join() made meanwhile is answered by this one.
          for (const w of [...room.waiters]) this.settle(w, undefined, users);
          if (!room.wanted) {
            // left again while the join was on its way
            void this.leave(room.name);
          }
        } else {
          this.settle(p, undefined, frame);
        }
        return;
      }
      case 'pong':
      case 'auth':
        if (p !== undefined) this.settle(p, undefined, frame);
        return;
      case 'error': {
        const error = new RoomwireError(frame.data.code, frame.content);
        if (p !== undefined) this.settle(p, error);
        else this.emit('error', error);
        return;
      }
      default: {
        const other = frame as { type?: unknown; data?: { delay_ms?: unknown } };
        // a draining server's `reconnect` frame (docs/protocol.md section 4): wait this long before reconnecting after the coming close
        if (other.type === 'reconnect' && typeof other.data?.delay_ms === 'number') this.serverDelay = Math.max(0, other.data.delay_ms);
      }
    }
  }
}

/**
 * Create a client and start connecting.
 *
 * @example
 * ```ts
 * import { createClient } from 'roomwire/client';
 *
 * const client = createClient({ url: 'wss://chat.example.com/ws', getToken: () => fetchToken() });
 * const lobby = client.room('lobby');
 * lobby.on('message', (m) => console.log(`${m.username}: ${m.content}`));
 * const { users } = await lobby.join();
 * await lobby.send('hello');
 * ```
 *
 * @example On Node 20, with WebSocket from ws
 * ```ts
 * import WebSocket from 'ws';
 * const client = createClient({ url: 'ws://127.0.0.1:8080/ws', WebSocket });
 * ```
 */
export function createClient(options: ClientOptions): RoomwireClient {
  return new RoomwireClient(options);
}
