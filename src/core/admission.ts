/**
 * Admission: the hub's answer to an upgrade request (docs/protocol.md section 1). Route
 * (404), enabled (503), Origin (403), attempts per address (429), capacity (503), then the
 * token (401), in that order; an accepted request gets a {@link Ticket} that holds its
 * seat until the adapter's handshake opens or cancels it.
 */
import { isIP } from 'node:net';
import type { JwtVerifier } from './auth';
import { extractToken } from './auth';
import type { HubConfig } from './config';
import { RoomwireError, TOKEN_PROBLEMS, type TokenProblem } from './errors';
import { compileOrigins } from './origin';
import { AddressLimiter } from './rate-limit';
import { matchRoute, type Route } from './routes';
import type { Counters, RejectReason } from './stats';
import type { Authenticate, BrokerSeats, Clock, Identity, Logger, SeatKey, Transport, TransportListener, UpgradeRequest } from './types';
import { firstHeader, isPromise } from './util';

/** An accepted upgrade, waiting for the adapter's handshake. Call exactly one of its methods. */
export interface Ticket {
  /** Who will be on the connection; null for anonymous. */
  readonly identity: Identity | null;
  /** The room of the path, joined on open. */
  readonly room: string | undefined;
  /** The handshake succeeded: attach the transport and start the connection. */
  open(transport: Transport): TransportListener;
  /** The handshake failed or the socket went away: release the reserved seat. */
  cancel(): void;
}

/** The hub's answer to an upgrade request. */
export type Admission =
  | { readonly accepted: true; readonly ticket: Ticket }
  | {
      readonly accepted: false;
      /** HTTP status: 404, 503, 403, 429 or 401. */
      readonly status: number;
      /** Response headers (`Retry-After`, `WWW-Authenticate`). */
      readonly headers: Readonly<Record<string, string>>;
      /** Why, for the response body and for logs. */
      readonly reason: RejectReason;
      /**
       * What exactly, in one sentence for the response body: the token problem of a 401
       * (never the token), or what is wrong with the path of a 404.
       */
      readonly detail?: string;
    };

/** What admission needs from the hub it admits into. */
export interface Seats {
  /** True once the hub is closing: every upgrade is refused with 503. */
  readonly closing: boolean;
  /** Open connections. */
  readonly size: number;
  readonly counters: Counters;
  /** Whether debug entries are read (builds none for a silent logger). */
  debugging(): boolean;
  /** Start a connection on an opened ticket's transport; `seats` are its counted caps, released when it closes. */
  openConnection(transport: Transport, identity: Identity | null, room: string | undefined, address: string, seats: readonly SeatKey[]): TransportListener;
  /** Where connections are counted for the caps per user and per address. */
  readonly connectionSeats: BrokerSeats;
  /** The cap of this user (the `maxConnectionsFor` hook, else `maxConnectionsPerUser`). */
  userCap(identity: Identity, address: string): number;
}

/** Seconds a client refused for a connection cap is asked to wait before trying again. */
const CAP_RETRY_AFTER = '5';

const NO_SEATS: readonly SeatKey[] = [];

/**
 * `url` with the values of every `token` query parameter replaced, for logs: tokens
 * never reach a log line, at any level.
 */
function redactUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  if (!params.has('token')) return url;
  const out = new URLSearchParams();
  for (const [k, v] of params) out.append(k, k === 'token' ? '[redacted]' : v);
  return `${url.slice(0, q)}?${out.toString()}`;
}

function refusal(status: number, reason: RejectReason, headers: Record<string, string> = {}, detail?: string): Admission {
  return detail === undefined ? { accepted: false, status, headers, reason } : { accepted: false, status, headers, reason, detail };
}

/** The problem of a refused token, from what `authenticate` threw. */
function tokenProblem(err: unknown): TokenProblem {
  const detail = (err as RoomwireError | undefined)?.detail;
  return detail !== undefined && Object.hasOwn(TOKEN_PROBLEMS, detail) ? (detail as TokenProblem) : 'refused';
}

/** Decides upgrade requests for one hub and counts the seats held by pending handshakes. */
export class Admitter {
  /** Upgrades accepted and waiting for their handshake (they hold a seat). */
  pending = 0;
  private readonly originAllowed: (origin: string) => boolean;
  private readonly limiter: AddressLimiter;

  constructor(
    private readonly config: HubConfig,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly authenticate: Authenticate,
    private readonly verifyJwt: JwtVerifier,
    private readonly seats: Seats,
  ) {
    this.originAllowed = compileOrigins(config.allowedOrigins);
    this.limiter = new AddressLimiter(config.connectRate);
  }

  /** Classify a request target; undefined when it is outside the base path. */
  route(url: string): Route | undefined {
    return matchRoute(this.config.path, url);
  }

  /** Forget addresses whose attempt bucket is full again; run from the heartbeat sweep. */
  evict(now: number): void {
    this.limiter.evict(now);
  }

  admit(request: UpgradeRequest, route: Route | undefined = this.route(request.url ?? '/')): Admission | Promise<Admission> {
    const cfg = this.config;
    if (route === undefined) return this.reject(refusal(404, 'not_found'), request);
    const address = this.clientAddress(request);
    // Every request under B counts as an attempt, whatever its answer.
    const retryAfter = this.limiter.take(address, this.clock.now());
    if (route.kind === 'invalid') return this.reject(refusal(404, 'not_found', {}, route.problem), request);
    if (this.seats.closing) return this.reject(refusal(503, 'shutting_down'), request);
    if (!cfg.enabled) return this.reject(refusal(503, 'disabled'), request);
    const origin = firstHeader(request, 'origin');
    if (origin !== undefined && !this.originAllowed(origin)) return this.reject(refusal(403, 'origin'), request);
    if (retryAfter > 0) return this.reject(refusal(429, 'rate_limited', { 'Retry-After': String(retryAfter) }), request);
    if (this.seats.size + this.pending >= cfg.maxConnections) return this.reject(refusal(503, 'capacity'), request);

    const token = extractToken(request, route.search);
    const required = route.auth || cfg.requireAuth;
    this.pending++; // the seat is held while the identity is decided
    let identity: Identity | null | Promise<Identity | null>;
    try {
      identity = this.authenticate({ token, required, request, verifyJwt: this.verifyJwt });
    } catch (err) {
      return this.unauthorized(request, tokenProblem(err));
    }
    if (!isPromise<Identity | null>(identity)) return this.admitted(identity, token, required, route, address, request);
    // Promise.resolve: any thenable becomes a native promise, which adapters can tell apart.
    return Promise.resolve(identity).then(
      (id) => this.admitted(id, token, required, route, address, request),
      (err: unknown) => this.unauthorized(request, tokenProblem(err)),
    );
  }

  private unauthorized(request: UpgradeRequest, problem: TokenProblem): Admission {
    this.pending--;
    const challenge = problem === 'missing' ? 'Bearer' : 'Bearer error="invalid_token"';
    const a = refusal(401, 'unauthorized', { 'WWW-Authenticate': challenge }, `a valid token is required (${problem}): ${TOKEN_PROBLEMS[problem]}`);
    this.seats.counters.rejected.unauthorized++;
    this.log.info({ status: 401, reason: 'unauthorized', cause: problem, url: redactUrl(request.url), address: request.remoteAddress }, 'upgrade refused');
    return a;
  }

  private admitted(identity: Identity | null, token: string | undefined, required: boolean, route: Route, address: string, request: UpgradeRequest): Admission | Promise<Admission> {
    if (identity === null && required) return this.unauthorized(request, token === undefined ? 'missing' : 'refused');
    if (this.seats.closing) {
      this.pending--;
      return this.reject(refusal(503, 'shutting_down'), request);
    }
    // The caps per user and per address (docs/protocol.md section 10), after the token.
    const keys = this.seatKeys(identity, address);
    if (keys.length === 0) return { accepted: true, ticket: new AdmissionTicket(this, identity, route.room, address, NO_SEATS) };
    const connectionSeats = this.seats.connectionSeats;
    let full: number | Promise<number>;
    try {
      full = connectionSeats.acquire(keys);
    } catch {
      full = -1;
    }
    const seated = (f: number): Admission => {
      if (f >= 0) {
        this.pending--;
        const key = keys[f] as SeatKey;
        return this.reject(refusal(429, key.kind === 'user' ? 'user_limit' : 'address_limit', { 'Retry-After': CAP_RETRY_AFTER }), request);
      }
      if (this.seats.closing) {
        this.pending--;
        connectionSeats.release(keys);
        return this.reject(refusal(503, 'shutting_down'), request);
      }
      return { accepted: true, ticket: new AdmissionTicket(this, identity, route.room, address, keys) };
    };
    if (!isPromise<number>(full)) return seated(full);
    return full.then(seated, () => seated(-1));
  }

  /** The caps this upgrade counts against: its user's (authenticated only) and its address's. */
  private seatKeys(identity: Identity | null, address: string): readonly SeatKey[] {
    const userCap = identity === null ? 0 : this.seats.userCap(identity, address);
    const addressCap = this.config.maxConnectionsPerAddress;
    if (userCap === 0 && addressCap === 0) return NO_SEATS;
    const keys: SeatKey[] = [];
    if (userCap > 0) keys.push({ kind: 'user', id: (identity as Identity).userId, cap: userCap });
    if (addressCap > 0) keys.push({ kind: 'address', id: address, cap: addressCap });
    return keys;
  }

  private reject(a: Admission, request?: UpgradeRequest): Admission {
    if (!a.accepted) {
      this.seats.counters.rejected[a.reason]++;
      if (this.seats.debugging()) this.log.debug({ status: a.status, reason: a.reason, detail: a.detail, url: redactUrl(request?.url), address: request?.remoteAddress }, 'upgrade refused');
    }
    return a;
  }

  /**
   * The client address (docs/configuration.md, `WEBSOCKET_TRUST_PROXY`): with N =
   * `trustProxy` proxies, the entry N places from the right of the `X-Forwarded-For`
   * entries followed by the peer address (the first entry when there are fewer), or the
   * peer address when that entry is not a bare IP address. Entries a client writes
   * itself sit to the left and change nothing.
   */
  private clientAddress(request: UpgradeRequest): string {
    const peer = request.remoteAddress ?? 'unknown';
    const hops = this.config.trustProxy;
    if (hops === 0) return peer;
    const header = request.headers['x-forwarded-for'];
    if (header === undefined) return peer;
    const entries = (typeof header === 'string' ? header : header.join(',')).split(',');
    const at = entries.length - hops;
    const chosen = (at < 0 ? entries[0] : entries[at])?.trim() ?? '';
    return isIP(chosen) === 0 ? peer : chosen;
  }

  /** Called by a ticket exactly once: release its seat, and open its connection. */
  settle(ticket: AdmissionTicket, transport: Transport | undefined): TransportListener | undefined {
    this.pending--;
    if (transport === undefined) {
      this.seats.counters.rejected.handshake++;
      if (ticket.keys.length > 0) this.seats.connectionSeats.release(ticket.keys);
      return undefined;
    }
    return this.seats.openConnection(transport, ticket.identity, ticket.room, ticket.address, ticket.keys);
  }
}

/** An accepted upgrade waiting for its handshake; a class, so admitting allocates no closures. */
class AdmissionTicket implements Ticket {
  private settled = false;

  constructor(
    private readonly admitter: Admitter,
    readonly identity: Identity | null,
    readonly room: string | undefined,
    readonly address: string,
    /** The caps this connection is counted against. */
    readonly keys: readonly SeatKey[],
  ) {}

  open(transport: Transport): TransportListener {
    if (this.settled) throw new RoomwireError('ERR_TRANSPORT', 'ticket already used');
    this.settled = true;
    return this.admitter.settle(this, transport) as TransportListener;
  }

  cancel(): void {
    if (this.settled) return;
    this.settled = true;
    this.admitter.settle(this, undefined);
  }
}
