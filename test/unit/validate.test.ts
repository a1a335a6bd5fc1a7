/**
 * The compiled shape checks (src/core/validate.ts) answer exactly as zod's safeParse of the
 * schemas they were compiled from, on arbitrary input shaped like the protocol's frames.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ClientMessageSchemas, RequestIdSchema, ServerFrameSchemas } from '../../src/index';
import { compileShape } from '../../src/core/validate';

const value = fc.oneof(
  { depthSize: 'small' },
  fc.string({ maxLength: 70, unit: fc.constantFrom('a', 'b', '😀', ' ', '\u0000', 'é') }),
  fc.constantFrom('', 'lobby', 'x'.repeat(64), 'x'.repeat(65), '😀'.repeat(32), `${'😀'.repeat(32)}x`, '😀'.repeat(64), 'join', 'message'),
  fc.integer(),
  fc.constantFrom(0, -0, -1, 1.5, 2 ** 53 - 1, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.constantFrom('token', 'code', 'exp', 'x'), fc.oneof(fc.string({ maxLength: 3 }), fc.integer(), fc.constant(null)), { maxKeys: 3 }),
);

function frameLike(types: readonly string[]) {
  const keys = ['type', 'room', 'content', 'data', 'id', 'user_id', 'username', 'timestamp', 'extra'];
  return fc
    .tuple(fc.constantFrom(...types), fc.dictionary(fc.constantFrom(...keys), value, { maxKeys: 7 }), fc.boolean())
    .map(([type, rest, typed]) => (typed ? { ...rest, type } : rest));
}

describe('compiled shape checks', () => {
  it('agree with safeParse for every client message schema', () => {
    const types = Object.keys(ClientMessageSchemas);
    fc.assert(
      fc.property(frameLike(types), (frame) => {
        for (const [type, schema] of Object.entries(ClientMessageSchemas)) {
          expect({ type, frame, compiled: compileShape(schema)(frame) }).toEqual({ type, frame, compiled: schema.safeParse(frame).success });
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('agree with safeParse for every server frame schema (strict objects) and for request ids', () => {
    const types = Object.keys(ServerFrameSchemas);
    const checks = Object.entries(ServerFrameSchemas).map(([type, schema]) => [type, schema, compileShape(schema)] as const);
    const id = compileShape(RequestIdSchema);
    fc.assert(
      fc.property(frameLike(types), value, (frame, candidate) => {
        for (const [type, schema, compiled] of checks) expect({ type, frame, ok: compiled(frame) }).toEqual({ type, frame, ok: schema.safeParse(frame).success });
        expect({ candidate, ok: id(candidate) }).toEqual({ candidate, ok: RequestIdSchema.safeParse(candidate).success });
      }),
      { numRuns: 3000 },
    );
  });

  it('falls back to safeParse for kinds it does not compile', () => {
    const schema = z.object({ when: z.date(), n: z.number().multipleOf(2) });
    const check = compileShape(schema);
    expect(check({ when: new Date(), n: 4 })).toBe(true);
    expect(check({ when: new Date(), n: 3 })).toBe(false);
    expect(check({ when: 'today', n: 4 })).toBe(false);
  });
});

describe('isValidRoomName', () => {
  it('answers as ROOM_NAME_PATTERN does, on arbitrary strings', async () => {
    const { ROOM_NAME_PATTERN, isValidRoomName } = await import('../../src/index');
    const unit = fc.constantFrom('a', 'Z', '0', '_', '.', ':', '-', ' ', '/', 'é', '😀', '\n', '\u0000', 'ſ', 'K');
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 70 }), (s) => {
        expect({ s, ok: isValidRoomName(s) }).toEqual({ s, ok: ROOM_NAME_PATTERN.test(s) });
      }),
      { numRuns: 5000 },
    );
    for (const s of ['', 'x'.repeat(64), 'x'.repeat(65), 'a\n', 'a b']) expect(isValidRoomName(s)).toBe(ROOM_NAME_PATTERN.test(s));
  });
});
