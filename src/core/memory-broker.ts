/**
 * roomwire's default broker: one process, no network. Room frames go straight to
 * the local members, presence is the local room registry, and room streams (history, docs/protocol.md
 * section 9) are rings in memory.
 */
import { MemoryHistory } from './memory-history';
import type { MessageParts, Outbound } from './protocol';
import { LocalSeats } from './seats';
import type { Broker, BrokerHistory, BrokerHost, HistoryPolicy, StreamPosition } from './types';

/** How often expired room histories are dropped (reading one also checks its TTL). */
const HISTORY_SWEEP_MS = 5000;

/**
 * Create the in-process {@link Broker} that {@link createHub} uses when none is given.
 * Publishing delivers synchronously, so the cost of the seam is one function call. Room
 * streams live in this process: a restart starts every room in a new epoch.
 */
export function createMemoryBroker(): Broker {
  let host: BrokerHost | undefined;
  let store: MemoryHistory | undefined;
  let stopSweep: (() => void) | undefined;
  /** The streams, made on first use (no timer for a hub without history). */
  const streams = (): MemoryHistory => {
    if (store === undefined) {
      const h = host as BrokerHost;
      store = new MemoryHistory(() => h.now());
      stopSweep = h.every(HISTORY_SWEEP_MS, () => store?.sweep());
    }
    return store;
  };
  const history: BrokerHistory = {
    publish(room: string, policy: HistoryPolicy, parts: MessageParts) {
      const message = streams().append(room, policy, parts);
      host?.deliver(room, message);
      return message.offset;
    },
    read(room: string, policy: HistoryPolicy, since: StreamPosition | undefined) {
      return streams().read(room, policy, since);
    },
    stats() {
      return store?.stats() ?? { rooms: 0, messages: 0, bytes: 0 };
    },
  };
  return {
    start(h) {
      host = h;
    },
    publish(room: string, message: Outbound) {
      host?.deliver(room, message);
    },
    join() {},
    leave() {},
    users(room: string) {
      return host === undefined ? [] : host.localUsers(room);
    },
    close() {
      stopSweep?.();
      host = undefined;
    },
    health() {
      return { kind: 'memory', connected: true, processes: 1 };
    },
    history,
    seats: new LocalSeats(),
  };
}
