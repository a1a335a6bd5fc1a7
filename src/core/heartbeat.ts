/**
 * Liveness for every connection from one periodic sweep (docs/protocol.md section 5): protocol
 * pings, pong deadlines, idle timeouts, slow readers and token expiry. No connection
 * owns a timer; each carries a few numbers the sweep compares with the clock.
 */
import type { HubConfig } from './config';

/** The per-connection state the sweep reads and writes. */
export interface Beating {
  /** Last inbound traffic of any kind (data frame, ping, pong). */
  lastSeen: number;
  /** Last protocol ping sent. */
  lastPing: number;
  /** When the oldest unanswered ping was sent; 0 when none is outstanding. */
  pingSentAt: number;
  /** Since when outbound bytes have stayed above `writeBufferSize`; 0 when below. */
  slowSince: number;
  /** Token expiry in milliseconds; 0 when none. */
  expiresAt: number;
  readonly bufferedAmount: number;
  sendPing(now: number): void;
  terminate(reason: TerminationReason): void;
  close(code: number, reason: string): void;
}

/** Why the sweep ended a connection. */
export type TerminationReason = 'pong_timeout' | 'idle_timeout' | 'slow_consumer';

/**
 * The sweep period: `heartbeatInterval`, or a quarter of the idle timeout when that is
 * shorter. A silent connection must be pinged one sweep before its idle deadline, so a
 * coarse sweep forces pings earlier than `pingPeriod`: with the defaults (timeout 60 s,
 * interval 30 s) a 30 s sweep would ping every 30 s; a 15 s one pings every 45 s, and
 * the sweep itself costs next to nothing (a few comparisons per connection).
 */
export function sweepPeriod(config: HubConfig): number {
  return Math.max(1, Math.min(config.heartbeatInterval, Math.floor(config.connectionTimeout / 4)));
}

/**
 * How long a keep-alive ping gets to be answered before its connection may be ended as
 * idle. The ping goes out one sweep ahead of the idle deadline; a sweep that runs late (a
 * busy event loop) or a slow network must not turn a live peer into an idle one, so the
 * idle deadline waits for an answer this long. docs/protocol.md section 5 allows every bound to be
 * late by one heartbeat interval plus one second: the sweep granularity and this grace.
 */
export const IDLE_PING_GRACE = 1000;

/**
 * Check one connection at time `now`; returns true when it was ended. Order: pong
 * deadline, idle timeout, slow reader, token expiry, then a ping when one is due or
 * when the connection would otherwise go idle before the next sweep.
 *
 * A connection silent for `connectionTimeout` is ended only once a ping has gone
 * unanswered for {@link IDLE_PING_GRACE}; when none is outstanding (the sweep came late),
 * it is pinged instead, and a pong (which counts as traffic) keeps it.
 */
export function checkLiveness(c: Beating, now: number, config: HubConfig, period: number): boolean {
  if (c.pingSentAt !== 0 && now - c.pingSentAt >= config.pongWait) {
    c.terminate('pong_timeout');
    return true;
  }
  const silent = now - c.lastSeen;
  if (silent >= config.connectionTimeout && c.pingSentAt !== 0 && now - c.pingSentAt >= IDLE_PING_GRACE) {
    c.terminate('idle_timeout');
    return true;
  }
  const buffered = c.bufferedAmount;
  if (buffered > config.maxBuffered) {
    c.terminate('slow_consumer');
    return true;
  }
  if (buffered > config.writeBufferSize) {
    if (c.slowSince === 0) c.slowSince = now;
    else if (now - c.slowSince >= config.writeWait) {
      c.terminate('slow_consumer');
      return true;
    }
  } else {
    c.slowSince = 0;
  }
  if (c.expiresAt !== 0 && now >= c.expiresAt) {
    c.close(1008, 'token expired');
    return true;
  }
  if (now - c.lastPing >= config.pingPeriod || (c.pingSentAt === 0 && silent + period >= config.connectionTimeout)) {
    c.sendPing(now);
  }
  return false;
}
