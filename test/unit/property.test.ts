/**
 * Property: whatever frame a client sends, the core never throws, answers a rejected
 * frame with exactly one error frame carrying a contract code, and changes no state
 * for it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WIRE_ERRORS, createHub } from '../../src/index';
import { FakeClock, connect } from '../helpers/fake';

const roomArb = fc.oneof(
  fc.constantFrom('lobby', 'r1', 'a:b', '', '../x', 'x'.repeat(65), 'caf\u00e9', '__proto__', 'constructor'),
  fc.stringMatching(/^[A-Za-z0-9_.:-]{1,64}$/),
  fc.string(),
);
const valueArb = fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 3 }), fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }));
const typeArb = fc.oneof(
  fc.constantFrom('join', 'leave', 'message', 'ping', 'pong', 'user_list', 'auth', 'error', '__proto__', 'constructor', 'toString'),
  fc.string(),
  fc.integer(),
);
const messageArb = fc.record(
  {
    type: typeArb,
    room: fc.oneof(roomArb, valueArb),
    content: fc.oneof(fc.string(), valueArb),
    data: fc.oneof(valueArb, fc.record({ token: fc.oneof(fc.string(), valueArb) }), fc.constant({ __proto__: { polluted: 1 } })),
    user_id: fc.string(),
  },
  { requiredKeys: [] },
);
const frameArb = fc.oneof(
  { weight: 6, arbitrary: messageArb.map((m) => ({ text: JSON.stringify(m), binary: false })) },
  { weight: 1, arbitrary: fc.string().map((text) => ({ text, binary: false })) },
  { weight: 1, arbitrary: fc.json().map((text) => ({ text, binary: false })) },
  { weight: 1, arbitrary: fc.constant({ text: '', binary: true }) },
  { weight: 1, arbitrary: fc.constantFrom('{"__proto__":{"polluted":1},"type":"ping"}', '{"type":"message","room":"lobby","content":"x","data":{"__proto__":{"polluted":1}}}').map((text) => ({ text, binary: false })) },
);

function snapshot(hub: ReturnType<typeof createHub>) {
  return JSON.stringify({ rooms: hub.roomNames().map((r) => [r, hub.members(r).length]), sizes: hub.stats().roomSizes, mine: hub.clients().map((c) => c.rooms) });
}

describe('property: arbitrary frames', () => {
  it('never throw, always answer a rejection with one contract error, and change nothing on a rejection', async () => {
    const codes = new Set(Object.keys(WIRE_ERRORS));
    await fc.assert(
      fc.asyncProperty(fc.array(frameArb, { minLength: 1, maxLength: 25 }), async (frames) => {
        const hub = createHub({ clock: new FakeClock(), messageRate: '1000/s,1000', maxRoomsPerConnection: 3, maxMessageSize: 100_000 });
        const peer = await connect(hub, '/ws/lobby');
        const other = await connect(hub, '/ws/lobby');
        peer.take();
        for (const frame of frames) {
          const before = snapshot(hub);
          expect(() => peer.listener.onMessage(frame.text, frame.binary, Buffer.byteLength(frame.text))).not.toThrow();
          const out = peer.take();
          for (const f of out) expect(typeof f.timestamp).toBe('number');
          const errors = out.filter((f) => f.type === 'error');
          if (errors.length > 0) {
            expect(out).toHaveLength(1);
            expect(codes.has((errors[0]!.data as { code: string }).code)).toBe(true);
            expect(snapshot(hub)).toBe(before);
          }
        }
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
        expect(other.closedWith).toBeUndefined();
        await hub.close();
      }),
      { numRuns: 300 },
    );
  });
});
