/**
 * roomwire's default broker: one process, no network. Room frames go straight to
 * the local members and presence is the local room registry.
 */
import type { Outbound } from './protocol';
import type { Broker, BrokerHost } from './types';

/**
 * Create the in-process {@link Broker} that {@link createHub} uses when none is given.
 * Publishing delivers synchronously, so the cost of the seam is one function call.
 */
export function createMemoryBroker(): Broker {
  let host: BrokerHost | undefined;
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
      host = undefined;
    },
    health() {
      return { kind: 'memory', connected: true, processes: 1 };
    },
  };
}
