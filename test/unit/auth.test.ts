import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { type JwtVerifier, configFromEnv, createJwtVerifier, extractToken, identityFromClaims } from '../../src/index';

/** The verifier answers HMAC tokens synchronously (a throw refuses); make every answer a promise. */
const asPromise = (verify: JwtVerifier) => async (token: string) => verify(token);

const req = (headers: Record<string, string>) => ({ headers });
const q = (s: string) => new URLSearchParams(s);

describe('extractToken', () => {
  it('takes the header first, then the query, then the cookie', () => {
    expect(extractToken(req({ authorization: 'Bearer h', cookie: 'token=c' }), q('token=q'))).toBe('h');
    expect(extractToken(req({ authorization: 'bearer h' }), q(''))).toBe('h');
    expect(extractToken(req({ cookie: 'token=c' }), q('token=q'))).toBe('q');
    expect(extractToken(req({ cookie: 'a=1; token=c; token=d' }), q(''))).toBe('c');
  });

  it('takes everything after "Bearer" as the token, malformed or not', () => {
    expect(extractToken(req({ authorization: 'Bearer a b', cookie: 'token=c' }), q('token=q'))).toBe('a b');
    expect(extractToken(req({ authorization: 'Bearer', cookie: 'token=c' }), q(''))).toBe('c');
  });

  it('ignores other schemes and empty values', () => {
    expect(extractToken(req({ authorization: 'Basic abc', cookie: 'token=c' }), q(''))).toBe('c');
    expect(extractToken(req({ authorization: 'Bearer ' }), q('token='))).toBeUndefined();
    expect(extractToken(req({ cookie: 'token=; x=1' }), q(''))).toBeUndefined();
    expect(extractToken(req({ cookie: 'mytoken=x' }), q(''))).toBeUndefined();
  });

  it('unquotes and decodes cookie values', () => {
    expect(extractToken(req({ cookie: 'token="a.b.c"' }), q(''))).toBe('a.b.c');
    expect(extractToken(req({ cookie: 'token=a%2Eb' }), q(''))).toBe('a.b');
  });
});

describe('identityFromClaims', () => {
  it('requires a non-empty sub', () => {
    expect(() => identityFromClaims({})).toThrow(expect.objectContaining({ code: 'unauthorized' }));
    expect(() => identityFromClaims({ sub: '' })).toThrow(expect.objectContaining({ code: 'unauthorized' }));
    expect(() => identityFromClaims({ sub: 42 })).toThrow(expect.objectContaining({ code: 'unauthorized' }));
  });

  it('maps sub, the username claims in order, and exp', () => {
    expect(identityFromClaims({ sub: 's', preferred_username: 'p', name: 'n', exp: 99 })).toEqual({
      userId: 's',
      username: 'p',
      expiresAt: 99,
      claims: { sub: 's', preferred_username: 'p', name: 'n', exp: 99 },
    });
  });
});

describe('createJwtVerifier', () => {
  const secret = 'a-secret-of-reasonable-length-0123456789';
  const hs = (claims: Record<string, unknown>, alg = 'HS256', key = secret) =>
    new SignJWT(claims).setProtectedHeader({ alg }).sign(new TextEncoder().encode(key));

  it('verifies HMAC tokens and refuses the wrong secret and alg none', async () => {
    const verify = asPromise(createJwtVerifier(configFromEnv({ WEBSOCKET_JWT_SECRET: secret }).jwt));
    expect((await verify(await hs({ sub: 'u', name: 'U' }))).username).toBe('U');
    await expect(verify(await hs({ sub: 'u' }, 'HS256', 'other-secret'))).rejects.toMatchObject({ code: 'unauthorized' });
    const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from('{"sub":"u"}').toString('base64url')}.`;
    await expect(verify(none)).rejects.toMatchObject({ code: 'unauthorized' });
  });

  it('applies the clock tolerance to nbf but not to exp, using the given clock', async () => {
    const now = 2_000_000_000;
    const jwt = configFromEnv({ WEBSOCKET_JWT_SECRET: secret, WEBSOCKET_JWT_CLOCK_TOLERANCE: '5' }).jwt;
    expect(jwt.clockTolerance).toBe(5);
    const verify = asPromise(createJwtVerifier(jwt, () => now * 1000));
    await expect(verify(await hs({ sub: 'u', exp: now + 1 }))).resolves.toMatchObject({ userId: 'u', expiresAt: now + 1 });
    await expect(verify(await hs({ sub: 'u', exp: now }))).rejects.toMatchObject({ code: 'unauthorized' });
    await expect(verify(await hs({ sub: 'u', exp: now - 3 }))).rejects.toMatchObject({ code: 'unauthorized' });
    await expect(verify(await hs({ sub: 'u', nbf: now + 3 }))).resolves.toMatchObject({ userId: 'u' });
    await expect(verify(await hs({ sub: 'u', nbf: now + 10 }))).rejects.toMatchObject({ code: 'unauthorized' });
  });

  it('verifies with a PEM public key and refuses algorithm confusion', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const es = await new SignJWT({ sub: 'e' }).setProtectedHeader({ alg: 'ES256' }).sign(privateKey);
    const confused = await hs({ sub: 'mallory' }, 'HS256', pem);

    const keyOnly = asPromise(createJwtVerifier(configFromEnv({ WEBSOCKET_JWT_PUBLIC_KEY: pem }).jwt));
    expect((await keyOnly(es)).userId).toBe('e');
    await expect(keyOnly(confused)).rejects.toMatchObject({ code: 'unauthorized' });

    const both = asPromise(createJwtVerifier(configFromEnv({ WEBSOCKET_JWT_PUBLIC_KEY: pem, WEBSOCKET_JWT_SECRET: secret }).jwt));
    expect((await both(es)).userId).toBe('e');
    await expect(both(confused)).rejects.toMatchObject({ code: 'unauthorized' });
  });

  describe('with a JWKS served on loopback', () => {
    let server: http.Server;
    afterAll(() => new Promise<void>((r) => server.close(() => r())));

    it('verifies tokens whose kid is in the set and refuses others', async () => {
      const good = await generateKeyPair('RS256');
      const stranger = await generateKeyPair('RS256');
      const jwk = { ...(await exportJWK(good.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
      let fetches = 0;
      server = http.createServer((_req, res) => {
        fetches++;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ keys: [jwk] }));
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
      const verify = asPromise(createJwtVerifier(configFromEnv({ WEBSOCKET_JWKS_URL: url }).jwt));

      const token = await new SignJWT({ sub: 'j' }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(good.privateKey);
      expect((await verify(token)).userId).toBe('j');
      expect((await verify(token)).userId).toBe('j');
      expect(fetches).toBe(1); // cached

      const forged = await new SignJWT({ sub: 'j' }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(stranger.privateKey);
      await expect(verify(forged)).rejects.toMatchObject({ code: 'unauthorized' });
      const hsToken = await hs({ sub: 'j' });
      await expect(verify(hsToken)).rejects.toMatchObject({ code: 'unauthorized' });

      // With a PEM key as well, a token naming a kid is checked against the set, one without against the key.
      const pemPair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const pem = pemPair.publicKey.export({ type: 'spki', format: 'pem' }).toString();
      const both = asPromise(createJwtVerifier(configFromEnv({ WEBSOCKET_JWKS_URL: url, WEBSOCKET_JWT_PUBLIC_KEY: pem }).jwt));
      expect((await both(token)).userId).toBe('j');
      const byPem = await new SignJWT({ sub: 'p' }).setProtectedHeader({ alg: 'ES256' }).sign(pemPair.privateKey);
      expect((await both(byPem)).userId).toBe('p');
    });
  });
});
