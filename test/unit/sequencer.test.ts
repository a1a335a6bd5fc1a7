/**
 * The offset order of numbered messages at one process (src/brokers/sequencer.ts): each edge
 * case as an exact test on a fake clock and a fake stream.
 */
import { describe, expect, it } from 'vitest';
import { RoomSequencer, type StreamSlice } from '../../src/brokers/sequencer';
import { Outbound } from '../../src/core/protocol';
import { FakeClock } from '../helpers/fake';

const GAP = 500;

function setup(stream: (after: { offset: number; epoch: string } | undefined) => Promise<StreamSlice> = () => Promise.reject(new Error('no stream'))) {
  const clock = new FakeClock();
  const delivered: string[] = [];
  const skipped: string[] = [];
  const reads: string[] = [];
  const seq = new RoomSequencer(
    (room, m) => delivered.push(`${room} ${m.text}`),
    (_room, after) => {
      reads.push(after === undefined ? 'position' : `${after.epoch} after ${after.offset}`);
      return stream(after);
    },
    clock,
    GAP,
    (room, from, to, why) => skipped.push(`${room} ${from}..${to}: ${why}`),
  );
  return { clock, seq, delivered, skipped, reads };
}

const m = (offset: number) => new Outbound(`m${offset}`, offset);
const flush = () => new Promise<void>((r) => setImmediate(r));

describe('RoomSequencer', () => {
  it('delivers in offset order: a message ahead waits for the ones before it; duplicates are dropped', async () => {
    const { seq, delivered } = setup();
    await seq.position('r', 'E', 3);
    seq.offer('r', 'E', m(5));
    seq.offer('r', 'E', m(3)); // already delivered (at or below the position)
    expect(delivered).toEqual([]);
    seq.offer('r', 'E', m(4));
    seq.offer('r', 'E', m(4));
    seq.offer('r', 'E', m(6));
    expect(delivered).toEqual(['r m4', 'r m5', 'r m6']);
  });

  it('holds messages that come before the position is known, then drops those at or below it', async () => {
    const { seq, delivered } = setup();
    seq.offer('r', 'E', m(7));
    seq.offer('r', 'E', m(8));
    seq.offer('r', 'E', m(6));
    expect(delivered).toEqual([]);
    await seq.position('r', 'E', 6);
    expect(delivered).toEqual(['r m7', 'r m8']);
  });

  it('resolves a read position only once everything up to it was delivered here', async () => {
    const { seq, delivered } = setup();
    await seq.position('r', 'E', 2);
    let done = false;
    void seq.position('r', 'E', 4).then(() => (done = true));
    await flush();
    expect(done).toBe(false);
    seq.offer('r', 'E', m(3));
    await flush();
    expect(done).toBe(false);
    seq.offer('r', 'E', m(4));
    await flush();
    expect(done).toBe(true);
    expect(delivered).toEqual(['r m3', 'r m4']);
  });

  it('fills a gap that does not close within gapMs from the stream', async () => {
    const { seq, delivered, clock, reads, skipped } = setup(async (after) => ({ offset: 5, epoch: 'E', frames: after?.offset === 1 ? ['m2', 'm3', 'm4', 'm5'] : undefined }));
    await seq.position('r', 'E', 1);
    seq.offer('r', 'E', m(4));
    seq.offer('r', 'E', m(5));
    clock.advance(GAP - 1);
    expect(reads).toEqual([]);
    clock.advance(1);
    expect(reads).toEqual(['E after 1']);
    await flush();
    expect(delivered).toEqual(['r m2', 'r m3', 'r m4', 'r m5']);
    expect(skipped).toEqual([]);
  });

  it('does not read when the gap closes by itself', async () => {
    const { seq, delivered, clock, reads } = setup();
    await seq.position('r', 'E', 0);
    seq.offer('r', 'E', m(2));
    clock.advance(GAP - 1);
    seq.offer('r', 'E', m(1));
    clock.advance(GAP * 4);
    expect(reads).toEqual([]);
    expect(delivered).toEqual(['r m1', 'r m2']);
  });

  it('skips a gap the stream no longer keeps, and tells', async () => {
    const { seq, delivered, clock, skipped } = setup(async () => ({ offset: 9, epoch: 'E', frames: undefined }));
    await seq.position('r', 'E', 1);
    seq.offer('r', 'E', m(8));
    seq.offer('r', 'E', m(9));
    clock.advance(GAP);
    await flush();
    expect(delivered).toEqual(['r m8', 'r m9']);
    expect(skipped).toEqual(['r 2..7: the stream no longer keeps them']);
  });

  it('skips a gap when the stream cannot be read', async () => {
    const { seq, delivered, clock, skipped } = setup(() => Promise.reject(new Error('no answer within 5000 ms')));
    await seq.position('r', 'E', 1);
    seq.offer('r', 'E', m(3));
    clock.advance(GAP);
    await flush();
    expect(delivered).toEqual(['r m3']);
    expect(skipped).toEqual(['r 2..2: the stream could not be read (no answer within 5000 ms)']);
  });

  it('moves to a new epoch: what waited of the old one goes first, in order; stragglers of the old one are dropped', async () => {
    const { seq, delivered } = setup();
    await seq.position('r', 'OLD', 1);
    seq.offer('r', 'OLD', m(4));
    seq.offer('r', 'OLD', m(3));
    seq.offer('r', 'NEW', m(1));
    seq.offer('r', 'OLD', m(2));
    seq.offer('r', 'NEW', m(2));
    expect(delivered).toEqual(['r m3', 'r m4', 'r m1', 'r m2']);
  });

  it('forgets a room with no members here: its waiters resolve and nothing more is delivered', async () => {
    const { seq, delivered, clock, reads } = setup();
    await seq.position('r', 'E', 0);
    seq.offer('r', 'E', m(2));
    let done = false;
    void seq.delivered('r', 'E', 2).then(() => (done = true));
    seq.forget('r');
    await flush();
    expect(done).toBe(true);
    clock.advance(GAP * 2);
    expect(reads).toEqual([]);
    expect(delivered).toEqual([]);
    expect(seq.has('r')).toBe(false);
  });

  it('keeps rooms apart', async () => {
    const { seq, delivered } = setup();
    await seq.position('a', 'E', 0);
    await seq.position('b', 'F', 5);
    seq.offer('b', 'F', m(6));
    seq.offer('a', 'E', m(2));
    seq.offer('a', 'E', m(1));
    expect(delivered).toEqual(['b m6', 'a m1', 'a m2']);
  });
});
