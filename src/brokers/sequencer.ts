/**
 * Offset order at the members of one process (docs/protocol.md section 9). A room's numbered
 * messages reach a process by several ways: its own publishes (the numbering script's
 * reply), the room's channel, frames held for a process not in step yet, and reads of the
 * stream. The sequencer delivers them to the room's members in offset order, each once: a
 * message ahead of the next expected offset waits for the ones before it; a gap that does
 * not close by itself within `gapMs` is filled from the stream, or, when the stream no
 * longer has those messages, skipped (the members see the jump in `offset`).
 */
import { Outbound } from '../core/protocol';
import type { Clock } from '../core/types';

/** What the sequencer reads from the room's stream. */
export interface StreamSlice {
  readonly offset: number;
  readonly epoch: string;
  /** The frames after the asked offset up to `offset`, in order; undefined when they are not all kept. */
  readonly frames: readonly string[] | undefined;
}

/** Read the room's stream: its position, and with `after`, the frames after that offset of `epoch`. */
export type StreamReader = (room: string, after: { readonly offset: number; readonly epoch: string } | undefined) => Promise<StreamSlice>;

interface Watcher {
  readonly epoch: string;
  readonly offset: number;
  readonly fn: () => void;
}

/** One room's order. */
class Order {
  /** The epoch delivered now; undefined until the room's position is first known. */
  epoch: string | undefined = undefined;
  /** The offset to deliver next. */
  next = 0;
  /** Messages of `epoch` ahead of `next`, by offset. */
  readonly ahead = new Map<number, Outbound>();
  /** Messages that came before the position was known, in arrival order. */
  early: { readonly epoch: string; readonly out: Outbound }[] = [];
  /** Epochs left behind: their stragglers are dropped. */
  readonly retired = new Set<string>();
  watchers: Watcher[] = [];
  cancelGap: (() => void) | undefined = undefined;
  reading = false;
}

/** @internal */
export class RoomSequencer {
  private readonly rooms = new Map<string, Order>();

  constructor(
    /** Deliver to this process's members of the room. */
    private readonly deliver: (room: string, message: Outbound) => void,
    private readonly read: StreamReader,
    private readonly clock: Clock,
    private readonly gapMs: number,
    /** Tell of a gap skipped (the stream no longer had it, or could not be read). */
    private readonly skipped: (room: string, from: number, to: number, why: string) => void,
  ) {}

  private order(room: string): Order {
    let o = this.rooms.get(room);
    if (o === undefined) this.rooms.set(room, (o = new Order()));
    return o;
  }

  /** A numbered message of `room` (epoch `epoch`), from any way it came. */
  offer(room: string, epoch: string, out: Outbound): void {
    const o = this.order(room);
    if (o.epoch === undefined) {
      o.early.push({ epoch, out });
      this.armGap(room, o);
      return;
    }
    if (epoch !== o.epoch) {
      if (o.retired.has(epoch)) return;
      this.newEpoch(room, o, epoch, 1);
    }
    this.accept(room, o, out);
  }

  /**
   * A read of the stream found the room at `offset` of `epoch`. Resolves once this process
   * has delivered every message up to it, so a joiner's held frames hold the rest.
   */
  position(room: string, epoch: string, offset: number): Promise<void> {
    const o = this.order(room);
    if (o.epoch === undefined) {
      o.epoch = epoch;
      o.next = offset + 1;
      const early = o.early;
      o.early = [];
      for (const e of early) this.offer(room, e.epoch, e.out);
    } else if (epoch !== o.epoch) {
      if (o.retired.has(epoch)) return Promise.resolve();
      // The stream was lost and started anew: its messages up to `offset` are on their way.
      this.newEpoch(room, o, epoch, 1);
    }
    return this.until(o, epoch, offset);
  }

  /** Resolves once the message at `offset` of `epoch` (and all before it) was delivered or skipped. */
  delivered(room: string, epoch: string, offset: number): Promise<void> {
    const o = this.rooms.get(room);
    return o === undefined ? Promise.resolve() : this.until(o, epoch, offset);
  }

  private until(o: Order, epoch: string, offset: number): Promise<void> {
    if (o.epoch !== epoch || o.next > offset) return Promise.resolve();
    return new Promise((resolve) => o.watchers.push({ epoch, offset, fn: resolve }));
  }

  /** The room has no members here any more. */
  forget(room: string): void {
    const o = this.rooms.get(room);
    if (o === undefined) return;
    this.rooms.delete(room);
    o.cancelGap?.();
    for (const w of o.watchers) w.fn();
  }

  /** Whether `room` is followed (it has members here and numbered messages or reads). */
  has(room: string): boolean {
    return this.rooms.has(room);
  }

  private accept(room: string, o: Order, out: Outbound): void {
    const offset = out.offset;
    if (offset < o.next) return;
    if (offset > o.next) {
      o.ahead.set(offset, out);
      this.armGap(room, o);
      return;
    }
    this.deliver(room, out);
    o.next++;
    this.drain(room, o);
  }

  /** Deliver what waited for the next offset; settle watchers. */
  private drain(room: string, o: Order): void {
    for (let m = o.ahead.get(o.next); m !== undefined; m = o.ahead.get(o.next)) {
      o.ahead.delete(o.next);
      this.deliver(room, m);
      o.next++;
    }
    if (o.ahead.size === 0 && o.cancelGap !== undefined) {
      o.cancelGap();
      o.cancelGap = undefined;
    }
    if (o.watchers.length > 0) {
      const due = o.watchers.filter((w) => w.epoch !== o.epoch || w.offset < o.next);
      if (due.length > 0) {
        o.watchers = o.watchers.filter((w) => !due.includes(w));
        for (const w of due) w.fn();
      }
    }
  }

  /** Switch to `epoch` from offset `next`: what waited of the old one goes out in order first. */
  private newEpoch(room: string, o: Order, epoch: string, next: number): void {
    const rest = [...o.ahead.keys()].sort((a, b) => a - b);
    for (const k of rest) this.deliver(room, o.ahead.get(k) as Outbound);
    o.ahead.clear();
    if (o.epoch !== undefined) o.retired.add(o.epoch);
    o.epoch = epoch;
    o.next = next;
    this.drain(room, o);
  }

  private armGap(room: string, o: Order): void {
    if (o.cancelGap !== undefined) return;
    o.cancelGap = this.clock.after(this.gapMs, () => {
      o.cancelGap = undefined;
      this.fill(room, o);
    });
  }

  /** The gap did not close by itself: read it from the stream, or skip it. */
  private fill(room: string, o: Order): void {
    if (this.rooms.get(room) !== o || o.reading) return;
    const epoch = o.epoch;
    const after = epoch === undefined ? undefined : { offset: o.next - 1, epoch };
    o.reading = true;
    this.read(room, after).then(
      (slice) => {
        o.reading = false;
        if (this.rooms.get(room) !== o) return;
        if (epoch === undefined) {
          if (o.epoch === undefined) void this.position(room, slice.epoch, slice.offset);
          return;
        }
        if (o.epoch !== epoch) return;
        if (slice.epoch === epoch && slice.frames !== undefined) {
          const from = (after as { offset: number }).offset + 1;
          slice.frames.forEach((text, i) => {
            if (from + i >= o.next && !o.ahead.has(from + i)) o.ahead.set(from + i, new Outbound(text, from + i));
          });
          this.drain(room, o);
        } else {
          this.skip(room, o, slice.epoch === epoch ? 'the stream no longer keeps them' : 'the stream was lost');
          if (slice.epoch !== epoch) this.newEpoch(room, o, slice.epoch, 1);
        }
        if (o.ahead.size > 0) this.armGap(room, o);
      },
      (err: unknown) => {
        o.reading = false;
        if (this.rooms.get(room) !== o) return;
        if (o.epoch === undefined) {
          // Never known: deliver what came, in order, from the first.
          const early = o.early;
          o.early = [];
          const first = early[0];
          if (first !== undefined) {
            o.epoch = first.epoch;
            o.next = Math.min(...early.filter((e) => e.epoch === first.epoch).map((e) => e.out.offset));
            for (const e of early) this.offer(room, e.epoch, e.out);
          }
          return;
        }
        this.skip(room, o, `the stream could not be read (${err instanceof Error ? err.message : String(err)})`);
      },
    );
  }

  /** Give up on the missing offsets: deliver from the first message that came. */
  private skip(room: string, o: Order, why: string): void {
    if (o.ahead.size === 0) return;
    const first = Math.min(...o.ahead.keys());
    this.skipped(room, o.next, first - 1, why);
    o.next = first;
    this.drain(room, o);
  }
}
