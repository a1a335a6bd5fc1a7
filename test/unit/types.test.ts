/** Type-level checks of the public API; `npm run typecheck` compiles them. */
import { describe, expectTypeOf, it } from 'vitest';
import { createHub, type Client, type Hub, type HubConfig, type RoomwireError, type WireErrorCode } from '../../src/index';
import { attach, type Attachment } from '../../src/adapters/node';

describe('public types', () => {
  it('types the events', () => {
    const hub = createHub();
    expectTypeOf(hub).toEqualTypeOf<Hub>();
    hub.on('message', (client, room, message) => {
      expectTypeOf(client).toEqualTypeOf<Client>();
      expectTypeOf(room).toBeString();
      expectTypeOf(message.content).toBeString();
    });
    hub.on('error', (error, client) => {
      expectTypeOf(error).toEqualTypeOf<RoomwireError>();
      expectTypeOf(client).toEqualTypeOf<Client | undefined>();
    });
    // @ts-expect-error: not an event of the hub
    hub.on('nope', () => {});
    void hub.close();
  });

  it('accepts strings for durations, rates and lists, and rejects wrong types', () => {
    const hub = createHub({ pingPeriod: '10s', messageRate: '5/s,10', allowedOrigins: 'https://a.example', jwt: { issuer: 'x' } });
    expectTypeOf(hub.config).toEqualTypeOf<HubConfig>();
    // @ts-expect-error: maxConnections is a number
    createHub({ maxConnections: '10' });
    void hub.close();
  });

  it('closes the wire error code union', () => {
    expectTypeOf<WireErrorCode>().toEqualTypeOf<
      'rate_limited' | 'invalid_json' | 'invalid_message' | 'unsupported_type' | 'invalid_room' | 'not_in_room' | 'too_many_rooms' | 'room_full' | 'forbidden' | 'unauthorized'
    >();
  });

  it('types the node adapter', () => {
    expectTypeOf(attach).returns.toEqualTypeOf<Attachment>();
  });
});
