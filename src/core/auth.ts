/**
 * Identity: where a token is found in an upgrade request (contract section 2), the JWT
 * verifier built on jose, and the default `authenticate` function that ties them.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { JwtConfig } from './config';
import { RoomwireError } from './errors';
import type { AuthContext, Identity, UpgradeRequest } from './types';

type Jose = typeof import('jose');
let josePromise: Promise<Jose> | undefined;
// jose is ESM-only; a dynamic import loads it from both the ESM and the CJS build.
function loadJose(): Promise<Jose> {
  return (josePromise ??= import('jose'));
}

function header(req: UpgradeRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : (v as string | undefined);
}

/**
 * Find the token of an upgrade request. First found wins: `Authorization: Bearer <jwt>`
 * (other schemes are ignored), then the `token` query parameter, then the `token`
 * cookie. Empty values count as absent.
 *
 * @param query - the request's parsed query string
 */
export function extractToken(req: UpgradeRequest, query: URLSearchParams): string | undefined {
  const authorization = header(req, 'authorization');
  if (authorization !== undefined) {
    const m = /^\s*bearer\s+(\S+)\s*$/i.exec(authorization);
    if (m) return m[1];
  }
  const fromQuery = query.get('token');
  if (fromQuery) return fromQuery;
  const cookie = header(req, 'cookie');
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

/**
 * Map verified JWT claims to an {@link Identity}: `user_id` is `sub` (required), the
 * username the first non-empty string of `username`, `preferred_username`, `name`,
 * else `sub`.
 */
export function identityFromClaims(claims: Readonly<Record<string, unknown>>): Identity {
  const sub = claims.sub;
  if (typeof sub !== 'string' || sub.length === 0) {
    throw new RoomwireError('unauthorized', 'token has no sub claim');
  }
  let username = sub;
  for (const key of ['username', 'preferred_username', 'name']) {
    const v = claims[key];
    if (typeof v === 'string' && v.length > 0) {
      username = v;
      break;
    }
  }
  const exp = typeof claims.exp === 'number' ? claims.exp : undefined;
  return { userId: sub, username, expiresAt: exp, claims };
}

/** Verifies a compact JWT and returns the identity it carries; rejects with an `unauthorized` {@link RoomwireError}. */
export type JwtVerifier = (token: string) => Promise<Identity>;

/**
 * Build the JWT verifier for a configuration: HMAC secrets for HS*, a PEM public key
 * or certificate for the asymmetric algorithms, or a remote JWK set (fetched, cached and
 * refetched on unknown `kid` by jose). Only `jwt.algorithms` are accepted, and each key
 * serves only its own family, so an HS token signed with the public key is refused.
 * `alg: none` is always refused.
 *
 * @param now - the hub clock in milliseconds, used for `exp` and `nbf`
 */
export function createJwtVerifier(jwt: JwtConfig, now: () => number = Date.now): JwtVerifier {
  const secret = jwt.secret === undefined ? undefined : new TextEncoder().encode(jwt.secret);
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

  return async (token) => {
    const jose = await loadJose();
    if (jwt.jwksUrl !== undefined && jwks === undefined) jwks = jose.createRemoteJWKSet(new URL(jwt.jwksUrl));
    const getKey = async (protectedHeader: { alg?: string }, input: Parameters<NonNullable<typeof jwks>>[1]) => {
      const alg = protectedHeader.alg ?? '';
      if (alg.startsWith('HS')) {
        if (secret === undefined) throw new RoomwireError('unauthorized', `algorithm ${alg} is not accepted`);
        return secret;
      }
      // With both a key and a set configured, a token naming a key id is looked up in the set.
      if (jwks !== undefined && (publicKey === undefined || (protectedHeader as { kid?: unknown }).kid !== undefined)) {
        return jwks(protectedHeader as Parameters<typeof jwks>[0], input);
      }
      if (publicKey !== undefined) return publicKey;
      throw new RoomwireError('unauthorized', `algorithm ${alg} is not accepted`);
    };
    let payload: Record<string, unknown>;
    const at = now();
    try {
      ({ payload } = await jose.jwtVerify(token, getKey, { ...options, currentDate: new Date(at) }));
    } catch (err) {
      if (err instanceof RoomwireError) throw err;
      throw new RoomwireError('unauthorized', `token refused: ${(err as Error).message}`, { cause: err });
    }
    // exp gets no leeway: a connection is closed when its token expires, so a token
    // already expired must not open one.
    if (typeof payload.exp === 'number' && payload.exp * 1000 <= at) {
      throw new RoomwireError('unauthorized', 'token refused: "exp" claim timestamp check failed');
    }
    return identityFromClaims(payload);
  };
}

/**
 * The default `authenticate`: no token means anonymous (`null`), a token must verify
 * as a JWT. Replace it through `createHub({ authenticate })`; call `ctx.verifyJwt` from
 * your own function to extend rather than replace it.
 */
export function defaultAuthenticate(ctx: AuthContext): Promise<Identity> | null {
  return ctx.token === undefined ? null : ctx.verifyJwt(ctx.token);
}
