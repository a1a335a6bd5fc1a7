/**
 * Identity: where a token is found in an upgrade request (docs/protocol.md section 2), the JWT
 * verifier built on jose, and the default `authenticate` function that ties them.
 */
import { createHmac, createPublicKey, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { JwtConfig } from './config';
import { RoomwireError, type TokenProblem } from './errors';
import type { AuthContext, Identity, UpgradeRequest } from './types';
import { firstHeader } from './util';

type Jose = typeof import('jose');
let josePromise: Promise<Jose> | undefined;
// jose is ESM-only; a dynamic import loads it from both the ESM and the CJS build.
function loadJose(): Promise<Jose> {
  return (josePromise ??= import('jose'));
}

/**
 * Find the token of an upgrade request. First found wins: `Authorization: Bearer <jwt>`
 * (other schemes are ignored), then the `token` query parameter, then the `token`
 * cookie. Empty values count as absent.
 *
 * @param query - the request's query string (without `?`), or its parsed form
 */
export function extractToken(req: UpgradeRequest, query: string | URLSearchParams): string | undefined {
  const authorization = firstHeader(req, 'authorization');
  if (authorization !== undefined) {
    // The scheme decides: whatever follows "Bearer" is the token (a malformed one is
    // refused later, never skipped for another source).
    const m = /^\s*bearer(?:\s+([\s\S]*))?$/i.exec(authorization);
    const value = m?.[1]?.trim();
    if (value) return value;
  }
  // Parsed as a browser's URLSearchParams would (`%74oken` is `token`), but only when the
  // query may hold one: the name must then contain "token" or a percent-escape.
  const fromQuery =
    typeof query === 'string' ? (query.includes('token') || query.includes('%') ? new URLSearchParams(query).get('token') : null) : query.get('token');
  if (fromQuery) return fromQuery;
  const cookie = firstHeader(req, 'cookie');
  if (cookie !== undefined) {
    for (const pair of cookie.split(';')) {
      const eq = pair.indexOf('=');
      if (eq < 0 || pair.slice(0, eq).trim() !== 'token') continue;
      let value = pair.slice(eq + 1).trim();
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      try {
        value = decodeURIComponent(value);
      } catch {
        // keep the raw value: verification will refuse it if it is not a JWT
      }
      if (value) return value;
    }
  }
  return undefined;
}

// C0 and C1 controls, and the bidirectional embeddings, overrides and isolates
// (U+202A-U+202E, U+2066-U+2069) that reorder what a reader sees.
const UNSAFE_IN_NAMES = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** Longest username, in Unicode code points. */
export const MAX_USERNAME_LENGTH = 64;

/**
 * A display name as roomwire stamps it (docs/protocol.md section 2): control characters and
 * bidirectional overrides removed, then cut to its first 64 Unicode code points. May
 * return the empty string.
 *
 * @example cleanUsername('\u202eevil\u0007') // 'evil'
 */
export function cleanUsername(name: string): string {
  const clean = name.replace(UNSAFE_IN_NAMES, '');
  // Code points, not UTF-16 units: never cut a surrogate pair in half.
  if (clean.length <= MAX_USERNAME_LENGTH) return clean;
  let out = '';
  let n = 0;
  for (const ch of clean) {
    if (n++ === MAX_USERNAME_LENGTH) break;
    out += ch;
  }
  return out;
}

/**
 * The username of an identity: the first candidate that is a non-empty string once
 * cleaned ({@link cleanUsername}), else `user`.
 */
export function pickUsername(...candidates: unknown[]): string {
  for (const c of candidates) {
    if (typeof c !== 'string') continue;
    const clean = cleanUsername(c);
    if (clean.length > 0) return clean;
  }
  return 'user';
}

/**
 * Map verified JWT claims to an {@link Identity}: `user_id` is `sub` (required), the
 * username the first of `username`, `preferred_username`, `name` that is a non-empty
 * string once cleaned of control and bidirectional-override characters and cut to 64
 * code points, else `sub` cleaned the same way, else `user`.
 */
export function identityFromClaims(claims: Readonly<Record<string, unknown>>): Identity {
  const sub = claims.sub;
  if (typeof sub !== 'string' || sub.length === 0) {
    throw new RoomwireError('unauthorized', 'token has no sub claim', { detail: 'no sub' });
  }
  const username = pickUsername(claims.username, claims.preferred_username, claims.name, sub);
  const exp = typeof claims.exp === 'number' ? claims.exp : undefined;
  return { userId: sub, username, expiresAt: exp, claims };
}

/**
 * Verifies a compact JWT and returns the identity it carries, or refuses it with an
 * `unauthorized` {@link RoomwireError}. HMAC tokens are answered synchronously (a
 * returned identity or a throw); the others through a promise. `await` it either way.
 */
export type JwtVerifier = (token: string) => Identity | Promise<Identity>;

const HMAC_HASH: Record<string, string> = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };
// The shape of nearly every segment: base64url characters only, no padding, no whitespace.
const PLAIN_BASE64URL = /^[A-Za-z0-9_-]*$/;
// As jose reads header and payload: UTF-8, refusing malformed bytes, one leading BOM dropped
// (a TextDecoder's default), then JSON.parse (a repeated key: the last one wins).
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
type FromBase64 = (text: string, options: { alphabet: 'base64url' }) => Uint8Array;
const URL_ALPHABET: { alphabet: 'base64url' } = { alphabet: 'base64url' };

function refuse(reason: string, problem: TokenProblem = 'malformed'): never {
  throw new RoomwireError('unauthorized', `token refused: ${reason}`, { detail: problem });
}

/** What a jose error says is wrong with a token. */
function joseProblem(err: unknown): TokenProblem {
  const e = err as { code?: string; claim?: string };
  switch (e.code) {
    case 'ERR_JWT_EXPIRED':
      return 'expired';
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return 'bad signature';
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return 'wrong algorithm';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return e.claim === 'iss' ? 'issuer' : e.claim === 'aud' ? 'audience' : e.claim === 'nbf' ? 'not yet valid' : 'malformed';
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JWKS_INVALID':
      return 'key set unavailable';
    default:
      return 'malformed';
  }
}

/**
 * Decode a base64url segment as jose 6 decodes every segment of a compact JWS (its
 * `decodeBase64(text, true)`), so that the two paths accept the same texts: the runtime's
 * own decoder decides. Where `Uint8Array.fromBase64` exists, jose calls it with the
 * base64url alphabet; elsewhere (Node 20) it refuses '+' and '/' and gives the text, turned
 * into the standard alphabet, to `atob`. Both are forgiving in the same ways: ASCII
 * whitespace (space, tab, LF, FF, CR) is skipped anywhere, padding is optional but when
 * present must complete the last group ('=' after three characters, '==' after two, as
 * the last thing but whitespace), a last group of one character is refused, and the bits
 * the last character leaves unused are ignored, set or not. So we call the same
 * primitive, save for the common shape (base64url characters only, no '=', no
 * whitespace, length % 4 !== 1), which both primitives decode exactly as Node's base64url
 * decoder does, at a fraction of `atob`'s cost. Returns undefined where jose throws.
 */
function decodeBase64url(text: string): Uint8Array | undefined {
  const fromBase64 = (Uint8Array as unknown as { fromBase64?: FromBase64 }).fromBase64;
  if (fromBase64 !== undefined) {
    try {
      return fromBase64(text, URL_ALPHABET);
    } catch {
      return undefined;
    }
  }
  if (PLAIN_BASE64URL.test(text)) return text.length % 4 === 1 ? undefined : Buffer.from(text, 'base64url');
  if (text.includes('+') || text.includes('/')) return undefined;
  let binary: string;
  try {
    binary = atob(text.replaceAll('-', '+').replaceAll('_', '/'));
  } catch {
    return undefined;
  }
  return Buffer.from(binary, 'latin1');
}

/** A header or payload segment as jose reads it: base64url, UTF-8, a JSON object. */
function decodeSegment(segment: string, what: string): Record<string, unknown> {
  const bytes = decodeBase64url(segment);
  if (bytes === undefined) refuse(`${what} is not base64url`);
  let value: unknown;
  try {
    value = JSON.parse(strictUtf8.decode(bytes));
  } catch {
    refuse(`${what} is not JSON`);
  }
  // JSON.parse makes plain objects only, so this is jose's isObject.
  if (typeof value !== 'object' || value === null || Array.isArray(value)) refuse(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

function numericDate(claims: Record<string, unknown>, name: string): number | undefined {
  const v = claims[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) refuse(`"${name}" claim must be a number`);
  return v;
}

/**
 * The registered-claim checks roomwire applies on both verification paths: `iss` and
 * `aud` against the configured lists (a missing claim fails), `nbf` and `iat` numbers
 * with `nbf` up to the tolerance in the future, and `exp` strictly in the future.
 */
function checkClaims(claims: Record<string, unknown>, jwt: JwtConfig, nowMs: number): void {
  const now = Math.floor(nowMs / 1000);
  if (jwt.issuer.length > 0 && !(typeof claims.iss === 'string' && jwt.issuer.includes(claims.iss))) refuse('unexpected "iss" claim value', 'issuer');
  if (jwt.audience.length > 0) {
    const aud = claims.aud;
    const values = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
    if (!values.some((a) => typeof a === 'string' && jwt.audience.includes(a))) refuse('unexpected "aud" claim value', 'audience');
  }
  numericDate(claims, 'iat');
  const nbf = numericDate(claims, 'nbf');
  if (nbf !== undefined && nbf > now + jwt.clockTolerance) refuse('"nbf" claim timestamp check failed', 'not yet valid');
  const exp = numericDate(claims, 'exp');
  if (exp !== undefined && exp * 1000 <= nowMs) refuse('"exp" claim timestamp check failed', 'expired');
}

/**
 * Verify an HS256/384/512 compact JWT with Node's synchronous HMAC: a few microseconds,
 * against the hundreds jose's asynchronous WebCrypto path costs per handshake. Only
 * algorithms in `algorithms` are accepted. Tokens with `crit` header parameters are left
 * to jose. Every segment is decoded by jose's rules (see {@link decodeBase64url}). A test
 * holds both paths to the same answers on a matrix of hand-made tokens, on generated claim
 * sets and on generated re-encodings of valid and forged tokens.
 */
function verifyHmac(token: string, header: Record<string, unknown>, key: KeyObject, algorithms: ReadonlySet<string>, jwt: JwtConfig, nowMs: number): Record<string, unknown> {
  const first = token.indexOf('.');
  const second = token.indexOf('.', first + 1);
  if (first < 0 || second < 0 || token.indexOf('.', second + 1) >= 0) refuse('not a compact JWS');
  const alg = header.alg;
  if (typeof alg !== 'string' || !algorithms.has(alg) || HMAC_HASH[alg] === undefined) refuse(`algorithm ${String(alg)} is not accepted`, 'wrong algorithm');
  const given = decodeBase64url(token.slice(second + 1));
  if (given === undefined) refuse('signature is not base64url');
  // Signed text: header and payload exactly as received (padding and whitespace included),
  // as jose signs them. A non-ASCII payload, which jose refuses to encode, fails decoding below.
  const expected = createHmac(HMAC_HASH[alg] as string, key).update(token.slice(0, second)).digest();
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) refuse('signature verification failed', 'bad signature');
  const claims = decodeSegment(token.slice(first + 1, second), 'payload');
  checkClaims(claims, jwt, nowMs);
  return claims;
}

/**
 * Build the JWT verifier for a configuration: HMAC secrets for HS*, a PEM public key
 * or certificate for the asymmetric algorithms, or a remote JWK set (fetched, cached and
 * refetched on unknown `kid` by jose). Only `jwt.algorithms` are accepted, and each key
 * serves only its own family, so an HS token signed with the public key is refused.
 * `alg: none` is always refused. HMAC tokens are verified synchronously with Node's
 * crypto; the others with jose.
 *
 * @param now - the hub clock in milliseconds, used for `exp` and `nbf`
 * @param paths - `fastHmac: false` verifies HMAC tokens with jose too (tests compare both)
 */
export function createJwtVerifier(jwt: JwtConfig, now: () => number = Date.now, paths: { fastHmac?: boolean } = {}): JwtVerifier {
  const secret = jwt.secret === undefined ? undefined : new TextEncoder().encode(jwt.secret);
  const hmacKey = secret === undefined || paths.fastHmac === false ? undefined : createSecretKey(secret);
  const accepted = new Set(jwt.algorithms);
  let publicKey: KeyObject | undefined;
  if (jwt.publicKey !== undefined) {
    try {
      publicKey = createPublicKey(jwt.publicKey);
    } catch (err) {
      throw new RoomwireError('ERR_INVALID_CONFIG', `jwt.publicKey is not a readable PEM key: ${(err as Error).message}`, {
        cause: err,
        issues: [{ name: 'jwt.publicKey', message: 'is not a readable PEM public key or certificate' }],
      });
    }
  }
  let jwks: ReturnType<Jose['createRemoteJWKSet']> | undefined;
  const algorithms = [...jwt.algorithms];
  const options = {
    algorithms,
    ...(jwt.issuer.length > 0 ? { issuer: [...jwt.issuer] } : {}),
    ...(jwt.audience.length > 0 ? { audience: [...jwt.audience] } : {}),
    clockTolerance: jwt.clockTolerance,
  };

  const viaJose = async (token: string): Promise<Identity> => {
    const jose = await loadJose();
    if (jwt.jwksUrl !== undefined && jwks === undefined) jwks = jose.createRemoteJWKSet(new URL(jwt.jwksUrl));
    const getKey = async (protectedHeader: { alg?: string }, input: Parameters<NonNullable<typeof jwks>>[1]) => {
      const alg = protectedHeader.alg ?? '';
      if (alg.startsWith('HS')) {
        if (secret === undefined) throw new RoomwireError('unauthorized', `algorithm ${alg} is not accepted`, { detail: 'wrong algorithm' });
        return secret;
      }
      // With both a key and a set configured, a token naming a key id is looked up in the set.
      if (jwks !== undefined && (publicKey === undefined || (protectedHeader as { kid?: unknown }).kid !== undefined)) {
        return jwks(protectedHeader as Parameters<typeof jwks>[0], input);
      }
      if (publicKey !== undefined) return publicKey;
      throw new RoomwireError('unauthorized', `algorithm ${alg} is not accepted`, { detail: 'wrong algorithm' });
    };
    let payload: Record<string, unknown>;
    const at = now();
    try {
      ({ payload } = await jose.jwtVerify(token, getKey, { ...options, currentDate: new Date(at) }));
    } catch (err) {
      if (err instanceof RoomwireError) throw err;
      throw new RoomwireError('unauthorized', `token refused: ${(err as Error).message}`, { cause: err, detail: joseProblem(err) });
    }
    // Again with roomwire's rules: exp gets no leeway (a connection is closed when its
    // token expires, so a token already expired must not open one).
    checkClaims(payload, jwt, at);
    return identityFromClaims(payload);
  };

  // Tokens of one issuer share their header, byte for byte: keep the last few decoded.
  const headers = new Map<string, Record<string, unknown>>();
  const decodeHeader = (segment: string): Record<string, unknown> | undefined => {
    let header = headers.get(segment);
    if (header === undefined) {
      try {
        header = decodeSegment(segment, 'header');
      } catch {
        return undefined; // jose answers malformed tokens
      }
      if (headers.size >= 16) headers.delete(headers.keys().next().value as string);
      headers.set(segment, header);
    }
    return header;
  };

  const noKey = jwt.secret === undefined && publicKey === undefined && jwt.jwksUrl === undefined;
  return (token) => {
    if (noKey) refuse('no key is configured to verify tokens', 'no key configured');
    if (hmacKey !== undefined) {
      // A token whose header names an HS algorithm takes the synchronous path.
      const dot = token.indexOf('.');
      const header = decodeHeader(dot < 0 ? token : token.slice(0, dot));
      const alg = header?.alg;
      // Extensions (crit) are jose's business; everything else HS takes the fast path.
      if (header !== undefined && typeof alg === 'string' && alg.startsWith('HS') && header.crit === undefined) {
        return identityFromClaims(verifyHmac(token, header, hmacKey, accepted, jwt, now()));
      }
    }
    return viaJose(token);
  };
}

/**
 * The default `authenticate`: no token means anonymous (`null`), a token must verify
 * as a JWT. Replace it through `createHub({ authenticate })`; call `ctx.verifyJwt` from
 * your own function to extend rather than replace it.
 */
export function defaultAuthenticate(ctx: AuthContext): Identity | Promise<Identity> | null {
  return ctx.token === undefined ? null : ctx.verifyJwt(ctx.token);
}
