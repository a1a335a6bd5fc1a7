import { describe, expect, it } from 'vitest';
import { parseRate } from '../../src/index';
import { AddressLimiter, Bucket } from '../../src/core/rate-limit';

describe('Bucket', () => {
  it('refills at count per period up to burst', () => {
    const b = new Bucket(parseRate('10/s,5'));
    expect(b.level(0, 0, 100)).toBeCloseTo(1);
    expect(b.level(0, 0, 10_000)).toBe(5);
    expect(b.waitMs(0.5)).toBeCloseTo(50);
    expect(b.fillMs).toBeCloseTo(500);
  });
});

describe('AddressLimiter', () => {
  it('allows burst attempts, then answers with whole seconds to wait', () => {
    const l = new AddressLimiter(parseRate('6/m,2'));
    expect([l.take('a', 0), l.take('a', 0), l.take('a', 0)]).toEqual([0, 0, 10]);
    expect(l.take('a', 9_000)).toBe(1);
    expect(l.take('a', 10_001)).toBe(0);
    expect(l.take('b', 10_001)).toBe(0);
  });

  it('forgets an address once its bucket has refilled', () => {
    const l = new AddressLimiter(parseRate('60/m,30'));
    for (let i = 0; i < 1000; i++) l.take(`10.0.${i >> 8}.${i & 255}`, i);
    expect(l.size).toBe(1000);
    l.evict(1000 + 29_000);
    expect(l.size).toBeGreaterThan(0);
    l.evict(1000 + 30_000);
    expect(l.size).toBe(0);
  });

  it('never holds more than maxEntries addresses, dropping the least recently seen', () => {
    const l = new AddressLimiter(parseRate('1/h,1'), 3);
    l.take('a', 0);
    l.take('b', 1);
    l.take('c', 2);
    expect(l.take('a', 3)).toBeGreaterThan(0); // a is now the most recent
    l.take('d', 4); // evicts b
    expect(l.size).toBe(3);
    expect(l.take('b', 5)).toBe(0); // b was forgotten: fresh bucket
    expect(l.take('a', 6)).toBeGreaterThan(0);
  });
});
