/**
 * One connection inside the hub: its identity, rooms, rate bucket, liveness numbers and
 * the in-order inbound queue. Flat numeric fields keep an idle connection small.
 */
import { RoomwireError, type WireErrorCode } from './errors';
import type { Beating, TerminationReason } from './heartbeat';
import { Outbound, checkFrame, encodeError, encodePong, identityFragment, type ClientMessage, type FrameCheck, type RequestId } from './protocol';
import type { Bucket } from './rate-limit';
import type { Counters } from './stats';
import type { Client, SeatKey, Transport, TransportListener } from './types';
import { isPromise } from './util';

/** What a connection needs from its hub. */
export interface ConnectionOwner {
  now(): number;
  readonly maxMessageSize: number;
  readonly readBufferSize: number;
  readonly writeBufferSize: number;
  /** Buffered outbound bytes past which a connection is terminated at once. */
  readonly maxBuffered: number;
  /** The message rate's refill arithmetic; each connection keeps its own level. */
  readonly messageBucket: Bucket;
  /** Handle one checked message; may return a promise to hold later frames back. */
  dispatch(conn: Connection, message: ClientMessage, room: string | undefined, text: string): void | Promise<void>;
  /** A handler threw: report it; the connection is then closed with 1011. */
  failed(conn: Connection, err: unknown): void;
  /**
   * The hub sent `conn` a close frame: bound the closing handshake. Returns a function
   * that cancels the bound, called when the connection closes.
   */
  closeStarted(conn: Connection, code: number, reason: string): () => void;
  errorSent(conn: Connection, code: WireErrorCode, room: string | undefined, detail?: string): void;
  readonly counters: Counters;
  /** The first part of every connection id of this hub (ids are `<prefix>-<seq>`). */
  readonly idPrefix: string;
  terminated(conn: Connection, reason: TerminationReason): void;
  closed(conn: Connection, code: number, reason: string): void;
}

const OPEN = 0;
const CLOSING = 1;
const CLOSED = 2;

type Queued = [data: string, isBinary: boolean, size: number];

/**
 * Throw unless `code` may be sent in a close frame (1000-1003, 1007-1014, 3000-4999) and
 * `reason` fits one (123 bytes of UTF-8), before any state changes.
 */
export function checkClose(code: number, reason: string): void {
  const valid = Number.isInteger(code) && ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999));
  if (!valid) throw new RoomwireError('ERR_INVALID_ARGUMENT', `${code} is not a close code that can be sent`);
  if (Buffer.byteLength(reason) > 123) throw new RoomwireError('ERR_INVALID_ARGUMENT', 'a close reason is at most 123 bytes of UTF-8');
}

/** @internal */
export class Connection implements Client, TransportListener, Beating {
  readonly connectedAt: number;
  /**
   * The rooms joined, in join order: the first in a field, the rest (rare: most members
   * are in one room) in a set made when a second room is joined.
   */
  private firstRoom: string | undefined = undefined;
  private moreRooms: Set<string> | undefined = undefined;
  private senderIdentityJson: string | undefined = undefined;
  claims: Readonly<Record<string, unknown>> | undefined;

  lastSeen: number;
  lastPing: number;
  pingSentAt = 0;
  slowSince = 0;
  expiresAt: number;

  private state = OPEN;
  private tokens: number;
  private tokensAt: number;
  private dropStreak = 0;
  private busy = false;
  private paused = false;
  private queue: Queued[] | undefined;
  private queuedBytes = 0;
  private overflowing = false;
  private cancelCloseTimer: (() => void) | undefined;
  /**
   * Room frames held back from this connection while it joins a room with history (docs/protocol.md
   * section 9): they follow its recovered messages and `ack`. Undefined when nothing is held.
   */
  held: Map<string, Outbound[]> | undefined = undefined;
  /**
   * This connection's messages in flight to a broker that numbers them (history over Redis),
   * settled once the last one is acked or refused; undefined when none is.
   */
  publishing: Promise<void> | undefined = undefined;
  /** The connection caps it is counted against (docs/protocol.md section 10); released when it closes. */
  seats: readonly SeatKey[] = [];

  constructor(
    private readonly owner: ConnectionOwner,
    readonly transport: Transport,
    /** The connection's number within its hub; {@link Connection.id} is made from it when asked. */
    private readonly seq: number,
    readonly userId: string,
    readonly username: string,
    readonly anonymous: boolean,
    claims: Readonly<Record<string, unknown>> | undefined,
    expiresAtSeconds: number | undefined,
    readonly remoteAddress: string | undefined,
  ) {
    const now = owner.now();
    this.connectedAt = now;
    this.lastSeen = now;
    this.lastPing = now;
    this.tokens = owner.messageBucket.burst;
    this.tokensAt = now;
    this.claims = claims;
    this.expiresAt = expiresAtSeconds === undefined ? 0 : expiresAtSeconds * 1000;
  }

  get id(): string {
    return `${this.owner.idPrefix}-${this.seq.toString(36)}`;
  }

  /**
   * JSON fragment `"user_id":…,"username":…` for the join and leave notices this
   * connection causes. Made per notice, not kept: every member joins, and a kept
   * fragment would cost each idle one about 90 bytes (230 as the concatenation it is made as).
   */
  get identity(): string {
    return identityFragment(this.userId, this.username);
  }

  /**
   * The same fragment for the messages this connection sends, kept from its first
   * message on, as one flat string: building it per message measurably slows fan-out
   * (about 10% of deliveries per second in `npm run bench`), and a member that never
   * sends never pays for it.
   */
  get senderIdentity(): string {
    // Copied through a Buffer so the cached string is one flat string, not a tree of the
    // pieces the template made (which V8 keeps as cons strings: 230 bytes instead of 90).
    return (this.senderIdentityJson ??= Buffer.from(identityFragment(this.userId, this.username)).toString());
  }

  get rooms(): readonly string[] {
    const first = this.firstRoom;
    if (first === undefined) return [];
    return this.moreRooms === undefined ? [first] : [first, ...this.moreRooms];
  }

  /** Number of rooms joined. */
  get roomCount(): number {
    return this.firstRoom === undefined ? 0 : 1 + (this.moreRooms?.size ?? 0);
  }

  /** Whether this connection is a member of `room`. */
  inRoom(room: string): boolean {
    return this.firstRoom === room || (this.moreRooms?.has(room) ?? false);
  }

  /** Record that this connection joined `room` (not yet a member). */
  addRoom(room: string): void {
    if (this.firstRoom === undefined) this.firstRoom = room;
    else (this.moreRooms ??= new Set()).add(room);
  }

  /** Record that this connection left `room`. */
  removeRoom(room: string): void {
    const more = this.moreRooms;
    if (this.firstRoom === room) {
      if (more === undefined || more.size === 0) {
        this.firstRoom = undefined;
        this.moreRooms = undefined;
        return;
      }
      const next = more.values().next().value as string;
      more.delete(next);
      this.firstRoom = next;
    } else {
      more?.delete(room);
    }
  }

  get bufferedAmount(): number {
    return this.transport.bufferedAmount;
  }

  /** True until the connection starts closing. */
  get open(): boolean {
    return this.state === OPEN;
  }

  // ---- TransportListener ------------------------------------------------------------

  onMessage(data: string, isBinary: boolean, size: number): void {
    if (this.state !== OPEN) return;
    const owner = this.owner;
    const now = owner.now();
    this.lastSeen = now;
    owner.counters.framesIn++;
    owner.counters.bytesIn += size;
    if (this.expiresAt !== 0 && now >= this.expiresAt) {
      this.close(1008, 'token expired');
      return;
    }
    if (size > owner.maxMessageSize) {
      // Checked here, with a reason that says the limit; the transport's own limit (ws's
      // maxPayload, set higher) is only a backstop that closes without one.
      this.close(1009, `message too large: max ${owner.maxMessageSize} bytes`);
      return;
    }
    // Order 1: the rate limit counts every inbound data frame. A dropped frame is not
    // read at all (parsing it would cost what the limit is there to save), so its error
    // names no room.
    if (!this.admitFrame(now)) {
      this.error('rate_limited', undefined);
      this.dropped();
      return;
    }
    if (this.busy) {
      (this.queue ??= []).push([data, isBinary, size]);
      this.queuedBytes += size;
      if (!this.paused && this.queuedBytes > owner.readBufferSize) {
        this.paused = true;
        this.transport.pause();
      }
      return;
    }
    this.run(data, isBinary);
  }

  onPong(): void {
    this.lastSeen = this.owner.now();
    this.pingSentAt = 0;
  }

  onPing(payload: Uint8Array): void {
    if (this.state !== OPEN) return;
    const now = this.owner.now();
    this.lastSeen = now;
    // Protocol pings spend the message rate too; one over it is dropped silently (no
    // pong, no error frame) but counts toward the 1008 close like any dropped frame.
    if (this.admitFrame(now)) this.transport.pong(payload);
    else this.dropped();
  }

  /**
   * Spend one token of the message rate for an inbound frame or ping at `now`. False
   * when the bucket is empty and the frame must be dropped; a frame let through ends
   * the run of drops.
   */
  private admitFrame(now: number): boolean {
    const level = this.owner.messageBucket.level(this.tokens, this.tokensAt, now);
    this.tokensAt = now;
    if (level < 1) {
      this.tokens = level;
      return false;
    }
    this.tokens = level - 1;
    this.dropStreak = 0;
    return true;
  }

  /**
   * One more frame dropped over the rate: `burst` in a row close the connection with 1008.
   * Nothing more is read from such a peer (a flood that ignores the close frame would
   * otherwise go on costing a core to parse); the closing handshake is cut short.
   */
  private dropped(): void {
    if (++this.dropStreak < this.owner.messageBucket.burst) return;
    this.close(1008, 'rate limit exceeded');
    this.paused = true;
    this.transport.pause();
  }

  onClose(code: number, reason: string): void {
    if (this.state === CLOSED) return;
    this.state = CLOSED;
    this.queue = undefined;
    this.cancelCloseTimer?.();
    this.cancelCloseTimer = undefined;
    this.owner.closed(this, code, reason);
  }

  // ---- inbound processing -----------------------------------------------------------

  /** Handle one frame now; if its handling is asynchronous, hold later frames until it settles. */
  private run(data: string, isBinary: boolean): void {
    const check = isBinary ? undefined : checkFrame(data);
    const publishing = this.publishing;
    if (publishing !== undefined && (check === undefined || !check.ok || check.message.type !== 'message')) {
      // Messages to rooms with history are numbered by a broker round trip and pipelined;
      // any other frame waits for their acks, so replies keep the requests' order and a
      // leave or a close never overtakes this connection's own messages.
      this.hold(publishing.then(() => this.handle(check, data)));
      return;
    }
    this.handle(check, data);
  }

  /** Handle a checked frame (`check` undefined: a binary frame). */
  private handle(check: FrameCheck | undefined, data: string): void {
    const counters = this.owner.counters;
    if (check === undefined) {
      counters.messagesIn.invalid++;
      this.error('invalid_message', undefined, undefined, 'binary frames are not accepted (send a JSON object as text)');
      return;
    }
    if (!check.ok) {
      counters.messagesIn.invalid++;
      this.error(check.code, check.room, check.id, check.detail);
      return;
    }
    counters.messagesIn[check.message.type]++;
    let pending: void | Promise<void>;
    try {
      pending = this.owner.dispatch(this, check.message, check.room, data);
    } catch (err) {
      this.owner.failed(this, err);
      return;
    }
    if (isPromise<void>(pending)) this.hold(pending);
  }

  /** Process `first` (already dispatched, async), then the queue, in order. */
  private hold(first: Promise<void>): void {
    this.busy = true;
    first.then(
      () => this.drain(),
      (err: unknown) => {
        this.owner.failed(this, err);
        this.drain();
      },
    );
  }

  /** @internal Process a message the hub generated (the path join) through the same queue. */
  enqueue(work: () => void | Promise<void>): void {
    let pending: void | Promise<void>;
    try {
      pending = work();
    } catch (err) {
      this.owner.failed(this, err);
      return;
    }
    if (isPromise<void>(pending)) this.hold(pending);
  }

  private drain(): void {
    this.busy = false;
    const queue = this.queue;
    while (queue !== undefined && queue.length > 0 && this.state === OPEN) {
      const [data, isBinary, size] = queue.shift() as Queued;
      this.queuedBytes -= size;
      this.run(data, isBinary);
      if (this.busy) return;
    }
    this.queuedBytes = 0;
    if (this.paused && this.state === OPEN) {
      this.paused = false;
      this.transport.resume();
    }
  }

  // ---- outbound ---------------------------------------------------------------------

  /** Send one serialized frame to this connection alone. */
  sendOutbound(out: Outbound, now: number): void {
    if (this.state !== OPEN) return;
    this.track(this.transport.send(out), now);
    const counters = this.owner.counters;
    counters.framesOut++;
    counters.bytesOut += Buffer.byteLength(out.text);
  }

  /** Record the bytes buffered after a send, for slow-reader detection. */
  track(buffered: number, now: number): void {
    if (buffered > this.owner.maxBuffered) this.overflow();
    if (buffered > this.owner.writeBufferSize) {
      if (this.slowSince === 0) this.slowSince = now;
    } else if (this.slowSince !== 0) {
      this.slowSince = 0;
    }
  }

  /**
   * Send an `error` frame (the connection stays open, nothing else changes); `id` is the
   * request id of the frame it answers, when that had a valid one.
   */
  error(code: WireErrorCode, room: string | undefined, id?: RequestId, detail?: string): void {
    const now = this.owner.now();
    this.sendOutbound(new Outbound(encodeError(code, room, Math.floor(now / 1000), id, detail)), now);
    this.owner.errorSent(this, code, room, detail);
  }

  /** Reply to an application-level `ping` (carrying its request id, if any). */
  pongFrame(id?: RequestId): void {
    const now = this.owner.now();
    this.sendOutbound(new Outbound(encodePong(Math.floor(now / 1000), id)), now);
  }

  send(frame: Readonly<Record<string, unknown>>): void {
    const now = this.owner.now();
    const body = frame.timestamp === undefined ? { ...frame, timestamp: Math.floor(now / 1000) } : frame;
    this.sendOutbound(new Outbound(JSON.stringify(body)), now);
  }

  // ---- closing ----------------------------------------------------------------------

  close(code = 1000, reason = ''): void {
    checkClose(code, reason);
    if (this.state !== OPEN) return;
    this.state = CLOSING;
    this.transport.close(code, reason);
    this.cancelCloseTimer = this.owner.closeStarted(this, code, reason);
  }

  /**
   * The peer did not finish the closing handshake in time: drop the TCP connection. The
   * close is reported with the code the server sent.
   */
  abandon(code: number, reason: string): void {
    if (this.state === CLOSED) return;
    this.transport.terminate();
    this.onClose(code, reason);
  }

  terminate(reason: TerminationReason): void {
    if (this.state === CLOSED) return;
    this.owner.terminated(this, reason);
    this.transport.terminate();
    this.onClose(1006, reason);
  }

  /**
   * Past `maxBuffered`: terminate, once the send in progress is over. A broadcast may be
   * iterating the rooms this connection is about to leave, and the members after it must
   * get the frame before the leave notices this causes.
   */
  private overflow(): void {
    if (this.overflowing) return;
    this.overflowing = true;
    queueMicrotask(() => this.terminate('slow_consumer'));
  }

  /** Send a protocol ping. */
  sendPing(now: number): void {
    this.lastPing = now;
    if (this.pingSentAt === 0) this.pingSentAt = now;
    this.transport.ping();
  }
}
