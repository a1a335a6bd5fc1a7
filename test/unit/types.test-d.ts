/** Type-level checks of the public API; vitest's typecheck runs them under `npm test`. */
import { describe, expectTypeOf, it } from 'vitest';
import { adapterHandle, createHub, type Admission, type Broker, type Client, type Hub, type HubConfig, type RoomwireError, type WireErrorCode } from '../../src/index';
import { createRedisBroker, redisBrokerFromEnv } from '../../src/redis/index';
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
      'rate_limited' | 'invalid_json' | 'invalid_message' | 'unsupported_type' | 'invalid_room' | 'not_in_room' | 'too_many_rooms' | 'room_full' | 'forbidden' | 'unauthorized' | 'unavailable'
    >();
  });

  it('types the node adapter', () => {
    expectTypeOf(attach).returns.toEqualTypeOf<Attachment>();
  });

  it('keeps admission off the application\'s hub and on the adapter handle', () => {
    const hub = createHub();
    // @ts-expect-error: adapters reach admission through adapterHandle(hub)
    void hub.admit;
    // @ts-expect-error: not the application's
    void hub.route;
    const handle = adapterHandle(hub);
    expectTypeOf(handle.admit({ url: '/ws', headers: {} })).toEqualTypeOf<Admission | Promise<Admission>>();
    void hub.close();
  });

  it('takes a broker, not Redis options', () => {
    // @ts-expect-error: Redis lives in roomwire/redis
    createHub({ redisUrl: 'redis://127.0.0.1:6379' });
    expectTypeOf(redisBrokerFromEnv).returns.toEqualTypeOf<Broker>();
    expectTypeOf(createRedisBroker).returns.toEqualTypeOf<Broker>();
  });
});
