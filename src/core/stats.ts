/**
 * Counters the hub keeps on its hot paths: plain number fields incremented in place,
 * no allocation and no label lookup per event. {@link Hub.stats} copies them out.
 */
import { WIRE_ERRORS, type WireErrorCode } from './errors';
import type { TerminationReason } from './heartbeat';
import { CLIENT_MESSAGE_TYPES, type ClientMessageType } from './protocol';

/** Why an upgrade was refused. */
export type RejectReason = 'not_found' | 'disabled' | 'origin' | 'rate_limited' | 'capacity' | 'unauthorized' | 'shutting_down' | 'handshake' | 'user_limit' | 'address_limit';

/** Every {@link RejectReason}. */
export const REJECT_REASONS: readonly RejectReason[] = ['not_found', 'disabled', 'origin', 'rate_limited', 'capacity', 'unauthorized', 'shutting_down', 'handshake', 'user_limit', 'address_limit'];

function zeroes<K extends string>(keys: readonly K[]): Record<K, number> {
  const o = {} as Record<K, number>;
  for (const k of keys) o[k] = 0;
  return o;
}

/** Upper bounds, in seconds, of the connection-duration histogram buckets (then +Inf). */
export const DURATION_BUCKETS: readonly number[] = [1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21_600, 86_400];

/** @internal The live counters of one hub. */
export class Counters {
  connectionsAccepted = 0;
  connectionsClosed = 0;
  readonly rejected = zeroes(REJECT_REASONS);
  framesIn = 0;
  bytesIn = 0;
  readonly messagesIn = zeroes<ClientMessageType | 'invalid'>([...CLIENT_MESSAGE_TYPES, 'invalid']);
  framesOut = 0;
  bytesOut = 0;
  deliveries = 0;
  /** Joins with `since` whose missed messages were all delivered, and those that got `recovered: false`. */
  recovered = 0;
  unrecovered = 0;
  readonly errors = zeroes(Object.keys(WIRE_ERRORS) as WireErrorCode[]);
  readonly terminations = zeroes<TerminationReason>(['pong_timeout', 'idle_timeout', 'slow_consumer']);
  /** Closed connections per duration bucket ({@link DURATION_BUCKETS}, then +Inf); not cumulative. */
  readonly durationCounts: number[] = new Array<number>(DURATION_BUCKETS.length + 1).fill(0);
  /** Sum of the lifetimes of closed connections, seconds. */
  durationSeconds = 0;

  /** Record the lifetime of a closed connection. */
  observeDuration(seconds: number): void {
    let i = 0;
    while (i < DURATION_BUCKETS.length && seconds > (DURATION_BUCKETS[i] as number)) i++;
    (this.durationCounts[i] as number)++;
    this.durationSeconds += seconds;
  }
}
