/**
 * Room streams in this process's memory (docs/protocol.md section 9): a bounded ring of the
 * latest messages per room, numbered from 1 per epoch, dropped a TTL after the room's last
 * message. Memory is bounded by the history size times the rooms that have one.
 */
import { randomBytes } from 'node:crypto';
import { Outbound, type MessageParts } from './protocol';
import type { HistoryPolicy, HistoryRead, HistoryStats, StreamPosition } from './types';

/** A new epoch: 12 random URL-safe characters. */
export function newEpoch(): string {
  return randomBytes(9).toString('base64url');
}

/** One room's stream. */
class Stream {
  /** The kept messages, oldest first, from `head` on (the slots before it are dropped ones). */
  private items: Outbound[] = [];
  private head = 0;
  /** The offset of the latest message; 0 before any. */
  last = 0;
  /** UTF-8 bytes of the kept messages. */
  bytes = 0;

  constructor(
    readonly epoch: string,
    public expiresAt: number,
  ) {}

  get kept(): number {
    return this.items.length - this.head;
  }

  /** Keep `message` (its offset is `last + 1`) and drop the oldest past `size`. */
  append(message: Outbound, size: number): void {
    this.last = message.offset;
    this.items.push(message);
    this.bytes += Buffer.byteLength(message.text);
    while (this.items.length - this.head > size) {
      this.bytes -= Buffer.byteLength((this.items[this.head] as Outbound).text);
      this.items[this.head++] = undefined as unknown as Outbound;
    }
    // Compact now and then: amortized O(1) per message.
    if (this.head >= 64 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  /** The messages after `offset`, oldest first, or undefined when one of them is gone or `offset` is ahead. */
  after(offset: number): Outbound[] | undefined {
    if (offset > this.last) return undefined;
    const n = this.last - offset;
    if (n > this.kept) return undefined;
    return this.items.slice(this.items.length - n);
  }
}

/** Every room's stream in this process, as the memory broker keeps them. */
export class MemoryHistory {
  private readonly streams = new Map<string, Stream>();
  private messages = 0;
  private bytes = 0;

  constructor(private readonly now: () => number) {}

  /** The live stream of `room`, made anew (a new epoch, from offset 1) when there is none. */
  private stream(room: string, policy: HistoryPolicy): Stream {
    const now = this.now();
    let s = this.streams.get(room);
    if (s !== undefined && s.expiresAt <= now) {
      this.drop(room, s);
      s = undefined;
    }
    if (s === undefined) {
      s = new Stream(newEpoch(), now + policy.ttl);
      this.streams.set(room, s);
    }
    return s;
  }

  /** Number and keep a message; returns it as the frame every member receives. */
  append(room: string, policy: HistoryPolicy, parts: MessageParts): Outbound {
    const s = this.stream(room, policy);
    const offset = s.last + 1;
    const message = new Outbound(`${parts.head}${offset}${parts.tail}`, offset);
    const kept = s.kept;
    const bytes = s.bytes;
    s.append(message, policy.size);
    this.messages += s.kept - kept;
    this.bytes += s.bytes - bytes;
    s.expiresAt = this.now() + policy.ttl;
    return message;
  }

  /** The room's position, and with `since` the messages after it (docs/protocol.md section 9). */
  read(room: string, policy: HistoryPolicy, since: StreamPosition | undefined): HistoryRead {
    const s = this.stream(room, policy);
    const position = { offset: s.last, epoch: s.epoch };
    if (since === undefined || since.epoch !== s.epoch) return { position, messages: undefined };
    return { position, messages: s.after(since.offset) };
  }

  /** Drop every stream whose TTL has passed. */
  sweep(): void {
    const now = this.now();
    for (const [room, s] of this.streams) if (s.expiresAt <= now) this.drop(room, s);
  }

  private drop(room: string, s: Stream): void {
    this.streams.delete(room);
    this.messages -= s.kept;
    this.bytes -= s.bytes;
  }

  stats(): HistoryStats {
    return { rooms: this.streams.size, messages: this.messages, bytes: this.bytes };
  }
}
