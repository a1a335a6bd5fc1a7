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

const HASH = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' } as const;
type Alg = keyof typeof HASH;

/** Sign two segments exactly as written (padding, whitespace and all), as an issuer holding the secret could. */
function signed(headerSegment: string, payloadSegment: string, alg: Alg = 'HS256', secret = SECRET): string {
  const input = `${headerSegment}.${payloadSegment}`;
  return `${input}.${createHmac(HASH[alg], secret).update(input).digest('base64url')}`;
}

const URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** The base64url text of a JSON object, grown by a filler claim until its length % 4 is `rem`. */
function segmentOf(value: Record<string, unknown>, rem: 0 | 2 | 3): string {
  for (let fill = ''; ; fill += 'x') {
    const segment = b64(JSON.stringify(fill ? { ...value, fill } : value));
    if (segment.length % 4 === rem) return segment;
  }
}

/** Set the bits of the last character that encode nothing: the same bytes, non-canonically written. */
function nonCanonical(segment: string): string {
  const unused = segment.length % 4 === 2 ? 0b1111 : segment.length % 4 === 3 ? 0b11 : 0;
  const last = URL_ALPHABET.indexOf(segment.slice(-1));
  if (unused === 0 || last < 0 || (last & unused) !== 0) throw new Error(`no unused bits to set in ${segment}`);
  return segment.slice(0, -1) + URL_ALPHABET[last | unused];
}

const insertAt = (s: string, at: number, text: string) => s.slice(0, at) + text + s.slice(at);

/** A correctly signed token whose `part` (0 header, 1 payload, 2 signature) contains `char`. */
function tokenWith(part: 0 | 1 | 2, char: string, claims: Record<string, unknown>): [string, string, string] {
  for (let n = 0; n < 1000; n++) {
    // '?' and '>' end in six set bits ('_', '-') when they fall last in a 3-byte group.
    const k = `${'x'.repeat(n % 3)}??>>${n}`;
    const parts = signed(b64(JSON.stringify({ alg: 'HS256', k })), b64(JSON.stringify({ ...claims, k }))).split('.') as [string, string, string];
    if (parts[part].includes(char)) return parts;
  }
  throw new Error(`no token with ${char} in part ${part}`);
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

/**
 * Hand-made re-encodings of the three segments of a valid token (h.p.s of `ok`), each
 * correctly signed over its own text where the signature does not cover it.
 */
function reencodings(h: string, p: string, s: string, ok: Record<string, unknown>): [string, string][] {
  const header = { alg: 'HS256' };
  const [h0, h2, h3] = [segmentOf(header, 0), segmentOf(header, 2), segmentOf(header, 3)];
  const [p0, p2, p3] = [segmentOf(ok, 0), segmentOf(ok, 2), segmentOf(ok, 3)];
  const cases: [string, string][] = [];
  // The signature (43 characters for HS256: one '=' makes it whole).
  for (const pad of ['==', '===', '====', ' =', '= ', '=\n', '=A', '=.']) cases.push([`signature + ${JSON.stringify(pad)}`, `${h}.${p}.${s}${pad}`]);
  cases.push(['signature with a = inside', `${h}.${p}.${insertAt(s, 20, '=')}`]);
  cases.push(['signature with its unused bits set', `${h}.${p}.${nonCanonical(s)}`]);
  cases.push(['signature with its unused bits set and = padding', `${h}.${p}.${nonCanonical(s)}=`]);
  for (const ws of [' ', '\t', '\n', '\r', '\f', '\v', '\u00a0', '\u2028', '  \r\n\t']) {
    cases.push([`signature with ${JSON.stringify(ws)} inside`, `${h}.${p}.${insertAt(s, 17, ws)}`]);
  }
  cases.push(['signature with leading and trailing spaces', `${h}.${p}. ${s} `]);
  cases.push(['signature of length % 4 == 1 (41)', `${h}.${p}.${s.slice(0, 41)}`]);
  cases.push(['signature of length % 4 == 1 (45)', `${h}.${p}.${s}AA`]);
  cases.push(['signature one character short', `${h}.${p}.${s.slice(0, 42)}`]);
  cases.push(['signature one character long', `${h}.${p}.${s}A`]);
  cases.push(['signature with a non-ASCII character', `${h}.${p}.${insertAt(s, 5, '\u00e9')}`]);
  const [sh, sp, sDash] = tokenWith(2, '-', ok);
  cases.push(["signature with '+' for '-'", `${sh}.${sp}.${sDash.replaceAll('-', '+')}`]);
  const [uh, up, sUnder] = tokenWith(2, '_', ok);
  cases.push(["signature with '/' for '_'", `${uh}.${up}.${sUnder.replaceAll('_', '/')}`]);
  // The header and the payload, signed over their re-encoded text.
  for (const [name, seg, place] of [['header', [h0, h2, h3], 0], ['payload', [p0, p2, p3], 1]] as const) {
    const [s0, s2, s3] = seg;
    const token = (text: string) => (place === 0 ? signed(text, p) : signed(h, text));
    for (const pad of ['', '=', '==', '===']) {
      cases.push([`${name} of length % 4 == 0 + ${JSON.stringify(pad)}`, token(s0 + pad)]);
      cases.push([`${name} of length % 4 == 2 + ${JSON.stringify(pad)}`, token(s2 + pad)]);
      cases.push([`${name} of length % 4 == 3 + ${JSON.stringify(pad)}`, token(s3 + pad)]);
    }
    cases.push([`${name} with "= =" padding`, token(`${s2}= =`)]);
    cases.push([`${name} with "=" then whitespace`, token(`${s3}=\n`)]);
    cases.push([`${name} with a = inside`, token(insertAt(s0, 8, '='))]);
    cases.push([`${name} with its unused bits set (4 bits)`, token(nonCanonical(s2))]);
    cases.push([`${name} with its unused bits set (2 bits)`, token(nonCanonical(s3))]);
    cases.push([`${name} with its unused bits set and padding`, token(`${nonCanonical(s2)}==`)]);
    for (const ws of [' ', '\t', '\n', '\r', '\f', '\v', '\u00a0', ' \r\n ']) {
      cases.push([`${name} with ${JSON.stringify(ws)} inside`, token(insertAt(s0, 7, ws))]);
    }
    cases.push([`${name} with leading and trailing whitespace`, token(` ${s0}\t`)]);
    cases.push([`${name} of length % 4 == 1`, token(`${s0}A`)]);
    cases.push([`${name} of length % 4 == 1 with padding`, token(`${s0}A===`)]);
    cases.push([`${name} with a non-ASCII character`, token(insertAt(s0, 4, '\u00e9'))]);
    cases.push([`${name} with a '!'`, token(insertAt(s0, 4, '!'))]);
    const [dh, dp] = tokenWith(place, '-', ok);
    cases.push([`${name} with '+' for '-'`, place === 0 ? signed(dh.replaceAll('-', '+'), dp) : signed(dh, dp.replaceAll('-', '+'))]);
    const [uh2, up2] = tokenWith(place, '_', ok);
    cases.push([`${name} with '/' for '_'`, place === 0 ? signed(uh2.replaceAll('_', '/'), up2) : signed(uh2, up2.replaceAll('_', '/'))]);
  }
  cases.push(['empty header', signed('', p)]);
  cases.push(['empty payload', signed(h, '')]);
  cases.push(['header of whitespace only', signed(' ', p)]);
  return cases;
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
      // base64url as jose decodes it: padding, unused bits, whitespace, alphabet, lengths.
      ...reencodings(h, p, s, ok),
      // UTF-8 and JSON as jose reads them.
      ['header with a BOM', signed(b64('\uFEFF{"alg":"HS256"}'), p)],
      ['payload with a BOM', signed(h, b64(`\uFEFF${JSON.stringify(ok)}`))],
      ['payload with two BOMs', signed(h, b64(`\uFEFF\uFEFF${JSON.stringify(ok)}`))],
      ['header of invalid UTF-8', signed(Buffer.from([0x7b, 0x22, 0x61, 0x6c, 0x67, 0x22, 0x3a, 0x22, 0x48, 0x53, 0x32, 0x35, 0x36, 0x22, 0x2c, 0x22, 0x78, 0x22, 0x3a, 0x22, 0xc3, 0x22, 0x7d]).toString('base64url'), p)],
      ['payload of overlong UTF-8', signed(h, Buffer.concat([Buffer.from('{"sub":"u","iss":"iss-a","aud":"aud-a","x":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]).toString('base64url'))],
      ['header with duplicate alg, none last', signed(b64('{"alg":"HS256","alg":"none"}'), p)],
      ['header with duplicate alg, HS256 last', signed(b64('{"alg":"none","alg":"HS256"}'), p)],
      ['header with duplicate alg, HS384 last', signed(b64('{"alg":"HS256","alg":"HS384"}'), p, 'HS384')],
      ['header with duplicate alg, HS512 last', signed(b64('{"alg":"HS384","alg":"HS512"}'), p, 'HS512')],
      ['payload with duplicate sub', signed(h, b64('{"sub":"a","iss":"iss-a","aud":"aud-a","sub":"b"}'))],
      ['payload with duplicate iss, good one last', signed(h, b64('{"sub":"u","iss":"evil","aud":"aud-a","iss":"iss-a"}'))],
      ['payload with duplicate iss, bad one last', signed(h, b64('{"sub":"u","iss":"iss-a","aud":"aud-a","iss":"evil"}'))],
      ['payload with a __proto__ key', signed(h, b64('{"__proto__":{"sub":"p"},"sub":"u","iss":"iss-a","aud":"aud-a"}'))],
      ['payload with exp 1e999', signed(h, b64('{"sub":"u","iss":"iss-a","aud":"aud-a","exp":1e999}'))],
      ['payload a JSON string', signed(h, b64('"x"'))],
      ['payload JSON null', signed(h, b64('null'))],
      ['header JSON null', signed(b64('null'), p)],
      ['payload with trailing whitespace JSON', signed(h, b64(`${JSON.stringify(ok)} \n`))],
    ];
    const disagreements: { label: string; fast: unknown; jose: unknown }[] = [];
    for (const [label, token] of tokens) {
      const [viaFast, viaJose] = [await outcome(fast(token)), await outcome(jose(token))];
      if (JSON.stringify(viaFast) !== JSON.stringify(viaJose)) disagreements.push({ label, fast: viaFast, jose: viaJose });
    }
    expect(disagreements).toEqual([]);
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

describe('fast HMAC path and jose agree on re-encodings', () => {
  /** One change to the text of one segment; positions are taken modulo the segment's length. */
  type Edit =
    | { op: 'pad'; count: number }
    | { op: 'bits'; mask: number }
    | { op: 'space'; at: number; ws: string }
    | { op: 'alphabet'; which: '-' | '_' | 'both' }
    | { op: 'drop'; at: number }
    | { op: 'add'; at: number; char: string };
  const edit: fc.Arbitrary<Edit> = fc.oneof(
    fc.record({ op: fc.constant('pad' as const), count: fc.integer({ min: 0, max: 3 }) }),
    fc.record({ op: fc.constant('bits' as const), mask: fc.integer({ min: 1, max: 15 }) }),
    fc.record({ op: fc.constant('space' as const), at: fc.nat(), ws: fc.constantFrom(' ', '\t', '\n', '\r', '\f', '\v', '\u00a0') }),
    fc.record({ op: fc.constant('alphabet' as const), which: fc.constantFrom('-' as const, '_' as const, 'both' as const) }),
    fc.record({ op: fc.constant('drop' as const), at: fc.nat() }),
    fc.record({ op: fc.constant('add' as const), at: fc.nat(), char: fc.constantFrom(...URL_ALPHABET, '=', '+', '/', ' ', '!', '\u00e9') }),
  );

  function apply(segment: string, e: Edit): string {
    switch (e.op) {
      case 'pad':
        return segment + '='.repeat(e.count);
      case 'bits': {
        // Flip the bits of the last base64url character that the length leaves unused (or,
        // when none are, its lowest bit: then the decoded bytes change).
        let i = segment.length - 1;
        while (i >= 0 && URL_ALPHABET.indexOf(segment.charAt(i)) < 0) i--;
        if (i < 0) return segment;
        const rem = segment.slice(0, i + 1).replace(/[^A-Za-z0-9_-]/g, '').length % 4;
        const unused = rem === 2 ? 0b1111 : rem === 3 ? 0b11 : 0b1;
        const flipped = URL_ALPHABET.indexOf(segment.charAt(i)) ^ (e.mask & unused || 1);
        return segment.slice(0, i) + URL_ALPHABET.charAt(flipped) + segment.slice(i + 1);
      }
      case 'space':
        return insertAt(segment, e.at % (segment.length + 1), e.ws);
      case 'alphabet':
        return e.which === '-' ? segment.replaceAll('-', '+') : e.which === '_' ? segment.replaceAll('_', '/') : segment.replaceAll('-', '+').replaceAll('_', '/');
      case 'drop':
        return segment.length === 0 ? segment : segment.slice(0, e.at % segment.length) + segment.slice((e.at % segment.length) + 1);
      case 'add':
        return insertAt(segment, e.at % (segment.length + 1), e.char);
    }
  }

  it('on re-encodings of valid and forged tokens', async () => {
    const { fast, jose } = verifiers({ WEBSOCKET_JWT_ALGORITHMS: 'HS256,HS384,HS512', WEBSOCKET_JWT_AUDIENCE: 'a1' });
    const claims = fc.record(
      {
        // '?' and '>' make '_' and '-' in the encoding, for the alphabet edits to act on.
        sub: fc.oneof(fc.string({ maxLength: 8 }), fc.stringMatching(/^[?>~a-z]{1,8}$/)),
        aud: fc.constantFrom('a1', 'b'),
        exp: fc.integer({ min: NOW - 5, max: NOW + 1000 }),
        name: fc.string({ maxLength: 4 }),
      },
      { requiredKeys: ['sub', 'aud'] },
    );
    const edits = fc.array(fc.record({ part: fc.constantFrom(0, 1, 2), edit }), { maxLength: 3 });
    const seen = { accepted: 0, acceptedEdited: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(
        claims,
        fc.constantFrom<Alg>('HS256', 'HS384', 'HS512'),
        fc.boolean(),
        edits,
        fc.boolean(),
        async (c, alg, rightKey, changes, resign) => {
          const secret = rightKey ? SECRET : 'forger';
          const parts = signed(b64(JSON.stringify({ alg, typ: 'JWT' })), b64(JSON.stringify(c)), alg, secret).split('.') as [string, string, string];
          for (const { part, edit: e } of changes) if (part < 2) parts[part] = apply(parts[part], e);
          // Optionally sign the edited header and payload text, so that only the encoding is odd.
          if (resign) parts[2] = createHmac(HASH[alg], secret).update(`${parts[0]}.${parts[1]}`).digest('base64url');
          for (const { part, edit: e } of changes) if (part === 2) parts[2] = apply(parts[2], e);
          const token = parts.join('.');
          const [viaFast, viaJose] = [await outcome(fast(token)), await outcome(jose(token))];
          expect({ token, outcome: viaFast }).toEqual({ token, outcome: viaJose });
          if ('refused' in (viaFast as object)) {
            expect(viaFast).toEqual({ refused: 'unauthorized' });
            seen.refused++;
          } else {
            seen.accepted++;
            if (changes.length > 0) seen.acceptedEdited++;
          }
        },
      ),
      { numRuns: 500 },
    );
    // The property saw both answers, and re-encoded tokens that are still good.
    expect(seen.accepted).toBeGreaterThan(0);
    expect(seen.acceptedEdited).toBeGreaterThan(0);
    expect(seen.refused).toBeGreaterThan(0);
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
