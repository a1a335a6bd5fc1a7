/**
 * Connection caps per user and per address in one process (docs/protocol.md section 10), on
 * the pure core: 429 with Retry-After after the token check, freed on close and on a
 * cancelled handshake, the per-user hook.
 */
import { describe, expect, it } from 'vitest';
import { adapterHandle, createHub, type Admission, type HubOptions, type RoomwireError } from '../../src/index';
import { SECRET, sign } from '../helpers/client';
import { FakeClock, FakeTransport } from '../helpers/fake';

function setup(options: HubOptions = {}) {
  const hub = createHub({ clock: new FakeClock(), jwt: { secret: SECRET }, connectRate: '100000/s,100000', ...options });
  const admit = async (token: string | undefined, address = '10.0.0.1'): Promise<Admission> =>
    adapterHandle(hub).admit({ url: token === undefined ? '/ws' : `/ws?token=${token}`, headers: {}, remoteAddress: address });
  /** Admit and open; returns the transport, or the refusal's status. */
  const open = async (token: string | undefined, address?: string): Promise<FakeTransport | number> => {
    const a = await admit(token, address);
    if (!a.accepted) return a.status;
    const t = new FakeTransport();
    t.listener = a.ticket.open(t);
    return t;
  };
  return { hub, admit, open };
}

describe('connection caps in one process', () => {
  it('caps the connections of one user (after the token check): 429 with Retry-After, freed when one closes', async () => {
    const { hub, admit, open } = setup({ maxConnectionsPerUser: 2 });
    const ann = await sign({ sub: 'ann' });
    const a1 = (await open(ann)) as FakeTransport;
    const a2 = (await open(ann)) as FakeTransport;
    const refused = await admit(ann);
    expect(refused).toEqual({ accepted: false, status: 429, headers: { 'Retry-After': '5' }, reason: 'user_limit' });
    // Another user, and anonymous connections, are not counted against ann.
    expect(await open(await sign({ sub: 'bob' }))).toBeInstanceOf(FakeTransport);
    expect(await open(undefined)).toBeInstanceOf(FakeTransport);
    expect(await open(undefined)).toBeInstanceOf(FakeTransport);
    // A bad token is a 401 first: the token is checked before the cap.
    expect((await admit('nope')) as { status: number }).toMatchObject({ status: 401 });
    a1.listener.onClose(1000, '');
    expect(await open(ann)).toBeInstanceOf(FakeTransport);
    expect(await open(ann)).toBe(429);
    a2.listener.onClose(1000, '');
    expect(hub.stats().rejected).toMatchObject({ user_limit: 2, address_limit: 0, unauthorized: 1 });
  });

  it('caps the connections of one address, anonymous ones included', async () => {
    const { admit, open } = setup({ maxConnectionsPerAddress: 2 });
    const first = (await open(undefined, '10.0.0.7')) as FakeTransport;
    expect(await open(await sign({ sub: 'ann' }), '10.0.0.7')).toBeInstanceOf(FakeTransport);
    expect(await admit(undefined, '10.0.0.7')).toEqual({ accepted: false, status: 429, headers: { 'Retry-After': '5' }, reason: 'address_limit' });
    expect(await open(undefined, '10.0.0.8')).toBeInstanceOf(FakeTransport);
    first.listener.onClose(1006, '');
    expect(await open(undefined, '10.0.0.7')).toBeInstanceOf(FakeTransport);
  });

  it('frees the seat of an upgrade whose handshake never completed', async () => {
    const { admit, open } = setup({ maxConnectionsPerUser: 1 });
    const ann = await sign({ sub: 'ann' });
    const a = await admit(ann);
    expect(a.accepted).toBe(true);
    expect(await admit(ann)).toMatchObject({ status: 429 });
    if (a.accepted) a.ticket.cancel();
    expect(await open(ann)).toBeInstanceOf(FakeTransport);
  });

  it('takes the per-user cap from maxConnectionsFor, for per-plan limits (0: no cap)', async () => {
    const errors: RoomwireError[] = [];
    const { hub, open } = setup({
      maxConnectionsPerUser: 1,
      maxConnectionsFor: (identity, address) => (identity.claims?.plan === 'pro' ? 3 : identity.userId === 'root' ? 0 : identity.userId === 'odd' ? -1 : address === '10.9.9.9' ? 2 : undefined),
    });
    hub.on('error', (e) => errors.push(e));
    const pro = await sign({ sub: 'p', plan: 'pro' });
    const opened = async (token: string, n: number, address?: string) => {
      const out: (FakeTransport | number)[] = [];
      for (let i = 0; i < n; i++) out.push(await open(token, address));
      return out.map((x) => (typeof x === 'number' ? x : 101));
    };
    expect(await opened(pro, 4)).toEqual([101, 101, 101, 429]);
    expect(await opened(await sign({ sub: 'root' }), 5)).toEqual([101, 101, 101, 101, 101]);
    expect(await opened(await sign({ sub: 'free' }), 2)).toEqual([101, 429]);
    expect(await opened(await sign({ sub: 'near' }), 3, '10.9.9.9')).toEqual([101, 101, 429]);
    expect(await opened(await sign({ sub: 'odd' }), 2)).toEqual([101, 429]);
    expect(errors.map((e) => `${e.code} ${e.message}`)).toEqual([
      'ERR_HOOK maxConnectionsFor returned -1: an integer of at least 0 (0: no cap) or undefined was expected; maxConnectionsPerUser applies',
      'ERR_HOOK maxConnectionsFor returned -1: an integer of at least 0 (0: no cap) or undefined was expected; maxConnectionsPerUser applies',
    ]);
  });

  it('counts nothing without caps', async () => {
    const { open } = setup();
    const ann = await sign({ sub: 'ann' });
    for (let i = 0; i < 50; i++) expect(await open(ann)).toBeInstanceOf(FakeTransport);
  });
});
