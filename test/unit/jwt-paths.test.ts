/**
 * HMAC tokens take roomwire's synchronous verification path; every other token, and
 * HMAC ones when `fastHmac: false`, take jose's. Both must accept and refuse the same
 * tokens with the same identity.
 */
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { type JwtVerifier, configFromEnv, createJwtVerifier } from '../../src/index';

/** The verifier answers HMAC tokens synchronously (a throw refuses); make every answer a promise. */
const asPromise = (verify: JwtVerifier) => async (token: string) => verify(token);

const SECRET = 'paths-secret-0123456789abcdef0123456789abcdef';
const NOW = 2_000_000_000;
const b64 = (s: string) => Buffer.from(s).toString('base64url');

async function hs(claims: Record<string, unknown>, header: Record<string, unknown> = { alg: 'HS256' }, secret = SECRET): Promise<string> {
  return new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(new TextEncoder().encode(secret));
}

/** Sign any header and payload text with HS256, as jose would refuse to for odd ones. */
function raw(header: Record<string, unknown>, payload: string): string {
  const input = `${b64(JSON.stringify(header))}.${b64(payload)}`;
  return `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`;
}

function verifiers(env: Record<string, string>) {
  const jwt = configFromEnv({ WEBSOCKET_JWT_SECRET: SECRET, ...env }).jwt;
  return {
    fast: asPromise(createJwtVerifier(jwt, () => NOW * 1000)),
    jose: asPromise(createJwtVerifier(jwt, () => NOW * 1000, { fastHmac: false })),
  };
}

async function outcome(p: Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await p };
  } catch (e) {
    return { refused: (e as { code?: string }).code };
  }
}

describe('fast HMAC path and jose agree', () => {
  it('on a matrix of hand-made tokens', async () => {
    const { fast, jose } = verifiers({ WEBSOCKET_JWT_ALGORITHMS: 'HS256,HS384', WEBSOCKET_JWT_ISSUER: 'iss-a,iss-b', WEBSOCKET_JWT_AUDIENCE: 'aud-a' });
    const ok = { sub: 'u', iss: 'iss-a', aud: 'aud-a' };
    const valid = await hs(ok);
    const [h, p, s] = valid.split('.') as [string, string, string];
    const tokens: [string, string][] = [
      ['valid HS256', valid],
      ['valid HS384', await hs(ok, { alg: 'HS384' })],
      ['HS512 not accepted', await hs(ok, { alg: 'HS512' })],
      ['wrong secret', await hs(ok, { alg: 'HS256' }, 'wrong')],
      ['alg none', `${b64('{"alg":"none"}')}.${p}.`],
      ['crit header', raw({ alg: 'HS256', crit: ['exp'], exp: 1 }, JSON.stringify(ok))],
      ['b64 false', raw({ alg: 'HS256', b64: false, crit: ['b64'] }, JSON.stringify(ok))],
      ['b64 false without crit', raw({ alg: 'HS256', b64: false }, JSON.stringify(ok))],
      ['raw-signed valid', raw({ alg: 'HS256', typ: 'JWT' }, JSON.stringify(ok))],
      ['payload not JSON, signed', raw({ alg: 'HS256' }, 'nope')],
      ['payload an array, signed', raw({ alg: 'HS256' }, '[1]')],
      ['header not JSON', `${b64('{alg')}.${p}.${s}`],
      ['payload not JSON', `${h}.${b64('nope')}.${s}`],
      ['four segments', `${valid}.x`],
      ['two segments', `${h}.${p}`],
      ['empty signature', `${h}.${p}.`],
      ['signature with a bad character', `${h}.${p}.${s.slice(0, -1)}!`],
      ['signature appended', `${valid}AA`],
      ['payload swapped', `${h}.${b64(JSON.stringify({ ...ok, sub: 'admin' }))}.${s}`],
      ['expired', await hs({ ...ok, exp: NOW - 1 })],
      ['expiring now', await hs({ ...ok, exp: NOW })],
      ['expiring later', await hs({ ...ok, exp: NOW + 60 })],
      ['exp a string', await hs({ ...ok, exp: `${NOW + 60}` })],
      ['nbf within tolerance', await hs({ ...ok, nbf: NOW + 4 })],
      ['nbf beyond tolerance', await hs({ ...ok, nbf: NOW + 6 })],
      ['iat a string', await hs({ ...ok, iat: 'yesterday' })],
      ['wrong issuer', await hs({ ...ok, iss: 'iss-c' })],
      ['second issuer', await hs({ ...ok, iss: 'iss-b' })],
      ['missing issuer', await hs({ sub: 'u', aud: 'aud-a' })],
      ['audience array', await hs({ ...ok, aud: ['x', 'aud-a'] })],
      ['wrong audience', await hs({ ...ok, aud: ['x'] })],
      ['missing sub', await hs({ iss: 'iss-a', aud: 'aud-a' })],
      ['username claims', await hs({ ...ok, name: 'N', preferred_username: 'P' })],
      ['signature with = padding', `${h}.${p}.${s}=`],
      ['payload with = padding', raw({ alg: 'HS256' }, JSON.stringify(ok)).replace(/^([^.]+)\.([^.]+)\./, (_m, a: string, b: string) => `${a}.${b}=.`)],
      ['payload of invalid UTF-8', (() => {
        const input = `${b64('{"alg":"HS256"}')}.${Buffer.from([0x7b, 0x22, 0x73, 0x75, 0x62, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]).toString('base64url')}`;
        return `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`;
      })()],
      ['crit b64 true', raw({ alg: 'HS256', b64: true, crit: ['b64'] }, JSON.stringify(ok))],
    ];
    for (const [label, token] of tokens) {
      expect({ label, outcome: await outcome(fast(token)) }).toEqual({ label, outcome: await outcome(jose(token)) });
    }
    expect(await outcome(fast(valid))).toMatchObject({ ok: { userId: 'u' } });
  });

  it('on arbitrary claim sets, algorithms and secrets', async () => {
    const { fast, jose } = verifiers({ WEBSOCKET_JWT_ALGORITHMS: 'HS256,HS512', WEBSOCKET_JWT_AUDIENCE: 'a1,a2' });
    const numeric = fc.oneof(fc.integer({ min: NOW - 20, max: NOW + 20 }), fc.constant('soon'), fc.constant(null));
    const claims = fc.record(
      {
        sub: fc.oneof(fc.string({ maxLength: 5 }), fc.integer()),
        aud: fc.oneof(fc.constantFrom('a1', 'a2', 'b'), fc.array(fc.constantFrom('a1', 'a2', 'b', 'c'), { maxLength: 3 })),
        exp: numeric,
        nbf: numeric,
        iat: numeric,
        username: fc.string({ maxLength: 5 }),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(claims, fc.constantFrom('HS256', 'HS384', 'HS512'), fc.boolean(), async (c, alg, rightKey) => {
        const token = await hs(c, { alg }, rightKey ? SECRET : 'other');
        expect(await outcome(fast(token))).toEqual(await outcome(jose(token)));
      }),
      { numRuns: 300 },
    );
  });
});

describe('the HMAC path is synchronous', () => {
  it('answers with an identity or a throw, no promise', async () => {
    const verify = createJwtVerifier(configFromEnv({ WEBSOCKET_JWT_SECRET: SECRET }).jwt, () => NOW * 1000);
    const identity = verify(await hs({ sub: 'sync' }));
    expect(identity).not.toBeInstanceOf(Promise);
    expect(identity).toMatchObject({ userId: 'sync' });
    const forged = await hs({ sub: 'x' }, { alg: 'HS256' }, 'wrong');
    expect(() => verify(forged)).toThrow(expect.objectContaining({ code: 'unauthorized' }));
    // Anything else goes through jose, asynchronously.
    const pending = verify('not-a-jwt');
    expect(pending).toBeInstanceOf(Promise);
    await expect(pending).rejects.toMatchObject({ code: 'unauthorized' });
  });
});
