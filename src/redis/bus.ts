/**
 * The presence protocol's {@link Bus} on Redis: a thin translation to a {@link RedisLink}.
 *
 * Names carry a hash tag so that one naming works on a single node and on a Cluster: the
 * control channel and the process registry share the slot of `{prefix}`, and each room's
 * channel has the slot of `{room}`, so rooms spread over a Cluster's shards.
 */
import { createHash } from 'node:crypto';
import type { Bus, BusEvents, BusSeats, BusStreams } from '../brokers/presence';
import type { StreamSlice } from '../brokers/sequencer';
import type { MessageParts } from '../core/protocol';
import type { HistoryPolicy, StreamPosition } from '../core/types';
import type { LinkSide, RedisLink } from './link';

/** Redis names of one hub (one prefix). @internal */
export interface RedisNames {
  readonly control: string;
  readonly processes: string;
  room(room: string): string;
  /** The room of a room channel name, or undefined for another channel. */
  roomOf(channel: string): string | undefined;
  /** The hash of a room's stream counter and epoch (history), in the slot of its channel. */
  sequence(room: string): string;
  /** The Redis stream of a room's latest messages (history), in the slot of its channel. */
  history(room: string): string;
  /** The hash of a connection cap's counts per process (`user:<id>` or `address:<address>`), in the slot of the registry. */
  seat(name: string): string;
}

/** The channel and key names for `prefix`. @internal */
export function redisNames(prefix: string): RedisNames {
  const roomStart = `${prefix}:room:{`;
  return {
    control: `{${prefix}}:control`,
    processes: `{${prefix}}:processes`,
    room: (room) => `${roomStart}${room}}`,
    roomOf: (channel) => (channel.startsWith(roomStart) && channel.endsWith('}') ? channel.slice(roomStart.length, -1) : undefined),
    sequence: (room) => `${prefix}:seq:{${room}}`,
    history: (room) => `${prefix}:history:{${room}}`,
    seat: (name) => `{${prefix}}:seat:${name}`,
  };
}

/**
 * Count one connection on every cap, unless one is full (docs/protocol.md section 10), in one
 * step, so racing upgrades on several processes never pass a cap. KEYS: the process
 * registry, then one hash per cap (count per process id). ARGV: this process's id, the time
 * (ms), how long a process may be silent before its counts no longer count, then each cap.
 * The counts of a process gone silent are dropped. Returns 0, or the 1-based index of the
 * first cap that is full.
 */
const ACQUIRE = `local me = ARGV[1]
local now = tonumber(ARGV[2])
local timeout = tonumber(ARGV[3])
local live = {}
for i = 2, #KEYS do
  local cap = tonumber(ARGV[i + 2])
  local fields = redis.call('HGETALL', KEYS[i])
  local total = 0
  for j = 1, #fields, 2 do
    local p = fields[j]
    local alive = live[p]
    if alive == nil then
      if p == me then
        alive = true
      else
        local at = redis.call('HGET', KEYS[1], p)
        alive = at ~= false and (now - tonumber(at)) < timeout
      end
      live[p] = alive
    end
    if alive then
      total = total + tonumber(fields[j + 1])
    else
      redis.call('HDEL', KEYS[i], p)
    end
  end
  if total >= cap then return i - 1 end
end
for i = 2, #KEYS do
  redis.call('HINCRBY', KEYS[i], me, 1)
  redis.call('PEXPIRE', KEYS[i], 86400000)
end
return 0`;

/** Uncount one connection of process ARGV[1] on every cap of KEYS. */
const RELEASE = `for i = 1, #KEYS do
  if redis.call('HINCRBY', KEYS[i], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[i], ARGV[1]) end
end
return 0`;

/**
 * Number, keep and publish one message, in one step on the server (docs/protocol.md section 9).
 * KEYS: the room's sequence hash, its stream, its channel. ARGV: the process id, an epoch for
 * a stream started anew, the size, the TTL (ms), the frame's head and tail, `1` for sharded
 * pub/sub. A sequence hash that is gone (expired, an empty Redis) starts a new epoch at 1.
 */
const APPEND = `local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  redis.call('DEL', KEYS[2])
  e = ARGV[2]
  redis.call('HSET', KEYS[1], 'e', e, 'o', 0)
end
local n = redis.call('HINCRBY', KEYS[1], 'o', 1)
local frame = ARGV[5] .. n .. ARGV[6]
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], n .. '-1', 'f', frame)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local publish = 'PUBLISH'
if ARGV[7] == '1' then publish = 'SPUBLISH' end
redis.call(publish, KEYS[3], ARGV[1] .. '!' .. e .. ' ' .. n .. ' ' .. frame)
return {n, e}`;

/**
 * A room's position and, with `since`, the frames after it. KEYS: the sequence hash, the
 * stream. ARGV: an epoch for a stream started anew, its TTL (ms, or 0 to start none), the
 * since offset (-1 for none), the since epoch. Returns `{offset, epoch, frames or false}`.
 */
const READ = `local e = redis.call('HGET', KEYS[1], 'e')
local o = 0
if not e then
  if ARGV[2] == '0' then return {0, '', false} end
  redis.call('DEL', KEYS[2])
  e = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', e, 'o', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  o = tonumber(redis.call('HGET', KEYS[1], 'o'))
end
local since = tonumber(ARGV[3])
if since < 0 or ARGV[4] ~= e or since > o then return {o, e, false} end
if since == o then return {o, e, {}} end
local entries = redis.call('XRANGE', KEYS[2], (since + 1) .. '-1', '+', 'COUNT', o - since)
if #entries ~= o - since then return {o, e, false} end
local frames = {}
for i, entry in ipairs(entries) do frames[i] = entry[2][2] end
return {o, e, frames}`;

/** A script and its SHA1, for EVALSHA. */
interface Script {
  readonly text: string;
  readonly sha: string;
}

function script(text: string): Script {
  return { text, sha: createHash('sha1').update(text).digest('hex') };
}

const APPEND_SCRIPT = script(APPEND);
const READ_SCRIPT = script(READ);
const ACQUIRE_SCRIPT = script(ACQUIRE);
const RELEASE_SCRIPT = script(RELEASE);

/** Rejects after `ms` unless `promise` settles first. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

const notConnected = (): Error => new Error('not connected to Redis');

/** @internal */
export class RedisBus implements Bus {
  readonly kind = 'redis';
  readonly title = 'Redis';
  private events: BusEvents | undefined;
  /** Rooms to receive, across reconnects. */
  private readonly rooms = new Set<string>();
  /** The subscriber has the control channel (and the rooms) since it last came up. */
  private subscribed = false;
  private wasUp = false;
  private closed = false;
  /** When the subscriber last received anything (its own beats come back every beat). */
  private lastHeard = Date.now();
  private probing = false;

  /** Room streams (history) in Redis. */
  readonly streams: BusStreams;
  /** Connection counts for the caps, in Redis. */
  readonly seats: BusSeats;

  constructor(
    private readonly link: RedisLink,
    private readonly names: RedisNames,
    private readonly commandTimeout: number,
  ) {
    this.streams = {
      append: (room, policy, message, process, epoch) => this.append(room, policy, message, process, epoch),
      read: (room, policy, after, epoch) => this.readStream(room, policy, after, epoch),
    };
    this.seats = {
      acquire: async (caps, process, now, timeout) => {
        const keys = [this.names.processes, ...caps.map((c) => this.names.seat(c.name))];
        const reply = await this.run(ACQUIRE_SCRIPT, keys, [process, String(now), String(timeout), ...caps.map((c) => String(c.cap))]);
        return Number(reply) - 1;
      },
      release: async (names, process) => {
        if (names.length > 0) await this.run(RELEASE_SCRIPT, names.map((n) => this.names.seat(n)), [process]);
      },
      set: async (name, process, count) => {
        const key = this.names.seat(name);
        if (count > 0) {
          await this.link.command(key, ['HSET', key, process, String(count)]);
          await this.link.command(key, ['PEXPIRE', key, '86400000']);
        } else {
          await this.link.command(key, ['HDEL', key, process]);
        }
      },
    };
  }

  /**
   * Run `s` with EVALSHA; when Redis does not have it (a new or restarted server), with
   * EVAL, which also loads it. Within the command timeout.
   */
  private run(s: Script, keys: readonly string[], args: readonly string[]): Promise<unknown> {
    if (!this.link.isReady('pub')) return Promise.reject(notConnected());
    const key = keys[0] as string;
    const tail = [String(keys.length), ...keys, ...args];
    // On a Cluster, ioredis takes NOSCRIPT for a failed redirection (and a failover leaves a
    // master without the script): EVAL, which Redis caches by the script's hash all the same.
    if (this.link.sharded) return within(this.link.command(key, ['EVAL', s.text, ...tail]), this.commandTimeout);
    const once = this.link.command(key, ['EVALSHA', s.sha, ...tail]).catch((err: unknown) => {
      if (!(this.link.isReplyError(err) && /NOSCRIPT/.test(String((err as Error).message)))) throw err;
      return this.link.command(key, ['EVAL', s.text, ...tail]);
    });
    return within(once, this.commandTimeout);
  }

  private async append(room: string, policy: HistoryPolicy, message: MessageParts, process: string, epoch: string): Promise<StreamPosition> {
    const keys = [this.names.sequence(room), this.names.history(room), this.names.room(room)];
    const reply = await this.run(APPEND_SCRIPT, keys, [process, epoch, String(policy.size), String(policy.ttl), message.head, message.tail, this.link.sharded ? '1' : '0']);
    if (!Array.isArray(reply) || reply.length !== 2) throw new Error(`unexpected reply to the numbering script: ${JSON.stringify(reply)}`);
    return { offset: Number(reply[0]), epoch: String(reply[1]) };
  }

  private async readStream(room: string, policy: HistoryPolicy | undefined, after: StreamPosition | undefined, epoch: string): Promise<StreamSlice> {
    const keys = [this.names.sequence(room), this.names.history(room)];
    const reply = await this.run(READ_SCRIPT, keys, [epoch, String(policy?.ttl ?? 0), String(after?.offset ?? -1), after?.epoch ?? '']);
    if (!Array.isArray(reply) || reply.length < 2) throw new Error(`unexpected reply to the reading script: ${JSON.stringify(reply)}`);
    const frames = Array.isArray(reply[2]) ? (reply[2] as unknown[]).map(String) : undefined;
    return { offset: Number(reply[0]), epoch: String(reply[1]), frames };
  }

  get address(): string {
    return this.link.address;
  }

  /** `Redis at redis://host:port`, for messages. */
  private get where(): string {
    return `Redis at ${this.link.address}`;
  }

  /** One node keeps one order across channels; a Cluster's shards do not. */
  get ordered(): boolean {
    return !this.link.sharded;
  }

  get up(): boolean {
    return this.subscribed && this.link.isReady('pub');
  }

  open(events: BusEvents): void {
    this.events = events;
    this.link.open({
      ready: (side) => this.ready(side),
      down: (side, err) => this.down(side, err),
      message: (channel, payload) => this.message(channel, payload),
      // A failed TLS handshake is this client refusing the server as often as the reverse.
      error: (err) => events.error(err.message.startsWith('TLS handshake failed') ? `${this.where}: ${err.message}; retrying` : `${this.where} refused the connection (${err.message}); retrying`, err),
    });
  }

  private ready(side: LinkSide): void {
    if (this.closed) return;
    if (side === 'sub') {
      this.lastHeard = Date.now();
      // The library resubscribes what it had; what was asked for while it was down, it
      // does not know of. SUBSCRIBE is idempotent: ask for everything.
      const channels = [this.names.control, ...[...this.rooms].map((r) => this.names.room(r))];
      this.link.subscribe(channels).then(
        () => {
          if (this.closed || !this.link.isReady('sub')) return;
          this.subscribed = true;
          this.maybeUp();
        },
        (err: unknown) => {
          if (this.link.isReplyError(err)) this.events?.error(`${this.where} refused SUBSCRIBE; retrying`, err);
          // Not subscribed: start over on a fresh connection.
          if (this.link.isReady('sub')) this.link.reset('sub');
        },
      );
    } else {
      this.maybeUp();
    }
  }

  private maybeUp(): void {
    if (!this.up) return;
    this.wasUp = true;
    this.events?.up();
  }

  private down(side: LinkSide, err: Error): void {
    if (this.closed) return;
    if (side === 'sub') this.subscribed = false;
    if (this.wasUp || side === 'sub') this.events?.down(err, side === 'sub');
  }

  private message(channel: string, payload: string): void {
    this.lastHeard = Date.now();
    if (channel === this.names.control) {
      this.events?.control(payload);
      return;
    }
    const room = this.names.roomOf(channel);
    if (room !== undefined) this.events?.room(room, payload);
  }

  private failed = (err: unknown): void => {
    if (this.link.isReplyError(err)) this.events?.error(`${this.where} refused a command`, err);
  };

  publishControl(payload: string): void {
    if (this.link.isReady('pub')) this.link.publish(this.names.control, payload).catch(this.failed);
  }

  publishRoom(room: string, payload: string): void {
    if (this.link.isReady('pub')) this.link.publish(this.names.room(room), payload).catch(this.failed);
  }

  subscribe(room: string): Promise<void> {
    this.rooms.add(room);
    if (!this.subscribed) return Promise.reject(notConnected());
    return this.link.subscribe([this.names.room(room)]).then(() => undefined);
  }

  unsubscribe(room: string): void {
    if (!this.rooms.delete(room)) return;
    if (this.link.isReady('sub')) this.link.unsubscribe([this.names.room(room)]).catch(this.failed);
  }

  register(id: string, at: number): void {
    if (this.link.isReady('pub')) this.link.command(this.names.processes, ['HSET', this.names.processes, id, String(at)]).catch(this.failed);
  }

  unregister(ids: readonly string[]): void {
    if (ids.length > 0 && this.link.isReady('pub')) this.link.command(this.names.processes, ['HDEL', this.names.processes, ...ids]).catch(this.failed);
  }

  async registered(): Promise<ReadonlyMap<string, number>> {
    const reply = await within(this.link.command(this.names.processes, ['HGETALL', this.names.processes]), this.commandTimeout);
    const out = new Map<string, number>();
    if (Array.isArray(reply)) {
      for (let i = 0; i + 1 < reply.length; i += 2) out.set(String(reply[i]), Number(reply[i + 1]));
    } else if (reply !== null && typeof reply === 'object') {
      for (const [id, at] of Object.entries(reply as Record<string, unknown>)) out.set(id, Number(at));
    }
    return out;
  }

  flush(): Promise<void> {
    if (!this.link.isReady('pub')) return Promise.reject(notConnected());
    return this.link.command(this.names.control, ['PING']).then(() => undefined);
  }

  probe(): void {
    if (this.closed || this.probing) return;
    const now = Date.now();
    // The subscriber hears this process's own beats; silence means it stopped receiving.
    const deaf = this.subscribed && this.wasUp && now - this.lastHeard > this.commandTimeout;
    if (!this.link.isReady('pub')) {
      if (deaf) this.link.reset('sub');
      return;
    }
    this.probing = true;
    within(this.link.command(this.names.control, ['PING']), this.commandTimeout).then(
      () => {
        this.probing = false;
        if (deaf && Date.now() - this.lastHeard > this.commandTimeout) this.link.reset('sub');
      },
      (err: unknown) => {
        this.probing = false;
        // Redis answered with an error: it is alive. No answer: drop and reconnect, and count
        // as down now (a library may report the close only once the frozen peer answers).
        if (this.closed || this.link.isReplyError(err) || !this.link.isReady('pub')) return;
        const why = new Error(`no answer to PING within ${this.commandTimeout} ms`);
        this.link.reset();
        this.down('sub', why);
      },
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.subscribed = false;
    await this.link.close();
  }
}
