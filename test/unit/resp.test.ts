/** The Redis broker's RESP2 reader and writer, and its redis:// URL parser. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseRedisUrl } from '../../src/brokers/redis-url';
import { createRedisBroker } from '../../src/brokers/redis';
import { encodeCommand, RedisReplyError, RespReader, type Reply } from '../../src/brokers/resp';

/** Encode a reply the way a Redis server does (bulk strings for strings). */
function encodeReply(r: Reply): string {
  if (r === null) return '$-1\r\n';
  if (typeof r === 'number') return `:${r}\r\n`;
  if (typeof r === 'string') return `$${Buffer.byteLength(r)}\r\n${r}\r\n`;
  if (r instanceof RedisReplyError) return `-${r.message}\r\n`;
  return `*${r.length}\r\n${r.map(encodeReply).join('')}`;
}

function readAll(bytes: Buffer, cuts: number[]): Reply[] {
  const out: Reply[] = [];
  const reader = new RespReader((r) => out.push(r));
  let at = 0;
  for (const cut of [...cuts].sort((x, y) => x - y)) {
    reader.feed(bytes.subarray(at, Math.max(at, cut)));
    at = Math.max(at, cut);
  }
  reader.feed(bytes.subarray(at));
  return out;
}

const replyArb: fc.Arbitrary<Reply> = fc.letrec<{ reply: Reply }>((tie) => ({
  reply: fc.oneof(
    { depthSize: 'small' },
    fc.string({ unit: 'binary' }),
    fc.constantFrom('', 'a\r\nb', '\r\n', '$3\r\nfoo', 'caf\u00e9 \u{1F600}'),
    fc.integer(),
    fc.constant(null),
    fc.array(tie('reply'), { maxLength: 5 }),
  ),
})).reply;

describe('RespReader', () => {
  it('reads every reply type, whole', () => {
    const bytes = Buffer.from('+OK\r\n-ERR wrong\r\n:42\r\n:-7\r\n$5\r\nhe\r\no\r\n$0\r\n\r\n$-1\r\n*-1\r\n*2\r\n*1\r\n:1\r\n$1\r\nx\r\n*0\r\n');
    const out = readAll(bytes, []);
    expect(out).toEqual(['OK', new RedisReplyError('ERR wrong'), 42, -7, 'he\r\no', '', null, null, [[1], 'x'], []]);
    expect((out[1] as RedisReplyError).message).toBe('ERR wrong');
  });

  it('reads the same replies however the bytes are split (property)', () => {
    fc.assert(
      fc.property(fc.array(replyArb, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 12 }), (replies, rawCuts) => {
        const bytes = Buffer.from(replies.map(encodeReply).join(''));
        const cuts = rawCuts.map((c) => c % (bytes.length + 1));
        expect(readAll(bytes, cuts)).toEqual(replies);
      }),
      { numRuns: 400 },
    );
  });

  it('reads a reply split inside a multi-byte character', () => {
    const bytes = Buffer.from(encodeReply(['message', 'ch', 'caf\u00e9']));
    const cut = bytes.indexOf(0xc3) + 1;
    expect(readAll(bytes, [cut])).toEqual([['message', 'ch', 'caf\u00e9']]);
  });

  it('builds a large array across many small chunks', () => {
    const reply: Reply = Array.from({ length: 5000 }, (_, i) => (i % 2 === 0 ? `field-${i}` : String(i)));
    const bytes = Buffer.from(encodeReply(reply));
    const cuts = Array.from({ length: Math.floor(bytes.length / 7) }, (_, i) => i * 7);
    expect(readAll(bytes, cuts)).toEqual([reply]);
  });

  it('refuses bytes that are not RESP', () => {
    const reader = new RespReader(() => {});
    expect(() => reader.feed(Buffer.from('HTTP/1.1 400 Bad Request\r\n'))).toThrow('unexpected RESP type byte 72');
    expect(() => new RespReader(() => {}).feed(Buffer.from('$x1\r\n'))).toThrow('malformed RESP length "x1"');
  });
});

describe('encodeCommand', () => {
  it('writes an array of bulk strings with byte lengths', () => {
    expect(encodeCommand(['PUBLISH', 'roomwire:room:lobby', 'caf\u00e9\r\n'])).toBe('*3\r\n$7\r\nPUBLISH\r\n$19\r\nroomwire:room:lobby\r\n$7\r\ncaf\u00e9\r\n\r\n');
  });
});

describe('parseRedisUrl', () => {
  it('reads host, port, TLS, credentials and database', () => {
    expect(parseRedisUrl('redis://127.0.0.1:6390')).toEqual({ host: '127.0.0.1', port: 6390, tls: false, username: undefined, password: undefined, database: undefined });
    expect(parseRedisUrl('rediss://app:p%40ss@cache.example.com/3')).toEqual({ host: 'cache.example.com', port: 6379, tls: true, username: 'app', password: 'p@ss', database: 3 });
    expect(parseRedisUrl('redis://:secret@[::1]:7000/0')).toEqual({ host: '::1', port: 7000, tls: false, username: undefined, password: 'secret', database: 0 });
  });

  it('refuses other schemes and paths that are not a database number', () => {
    expect(() => parseRedisUrl('http://redis')).toThrow('"http://redis" must be a redis:// or rediss:// URL');
    expect(() => parseRedisUrl('redis://h/db')).toThrow('"redis://h/db": the path must be a database number');
    expect(() => parseRedisUrl('not a url')).toThrow(TypeError);
    // A URL without its scheme says what to write.
    expect(() => parseRedisUrl('127.0.0.1:6379')).toThrow('"127.0.0.1:6379" is not a URL: write it as redis://127.0.0.1:6379 (or rediss:// for TLS)');
    expect(() => parseRedisUrl('localhost:6379/2')).toThrow('"localhost:6379/2" is not a URL: write it as redis://localhost:6379/2 (or rediss:// for TLS)');
    // A user part without a colon may be a password to some clients: masked whole.
    expect(() => parseRedisUrl('redis://app@h')).toThrow('"redis://***@h": a user name needs a password (redis://user:password@host)');
    expect(() => parseRedisUrl('redis://:%E0%A4%A@h')).toThrow('"redis://:***@h": bad percent-encoding in the user or password');
  });

  it('never shows a password in its messages', () => {
    const message = (url: string) => {
      try {
        parseRedisUrl(url);
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error(`${url} was accepted`);
    };
    expect(message('redis://user:s3cret@127.0.0.1:notaport')).toBe('"redis://user:***@127.0.0.1:notaport" is not a URL (expected redis://[user:password@]host[:port][/db])');
    expect(message('http://user:s3cret@h')).toBe('"http://user:***@h" must be a redis:// or rediss:// URL');
    expect(message('redis://:s3cret@h/db')).toBe('"redis://:***@h/db": the path must be a database number');
    expect(message('rediss://u:p%40ss:w@rd@h/x')).not.toContain('ss:w');
  });
});

describe('createRedisBroker options', () => {
  it('refuses a bad URL or timing with ERR_INVALID_ARGUMENT, before connecting', () => {
    const bad = (options: Parameters<typeof createRedisBroker>[0], message: string) =>
      expect(() => createRedisBroker(options)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message }));
    bad({ url: 'http://x' }, 'url: "http://x" must be a redis:// or rediss:// URL');
    bad({ url: 'redis://h', beatInterval: 0 }, 'beatInterval must be a positive number of milliseconds, not 0');
    bad({ url: 'redis://h', commandTimeout: Number.NaN }, 'commandTimeout must be a positive number of milliseconds, not NaN');
    bad({ url: 'redis://h', beatInterval: 1000, processTimeout: 1500 }, 'processTimeout (1500 ms) must be at least twice beatInterval (1000 ms)');
  });
});
