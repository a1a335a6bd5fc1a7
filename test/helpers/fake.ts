/** In-memory transport and manual clock for unit tests of the core. */
import { adapterHandle, createHub, type Clock, type HubOptions, type Outbound, type Transport, type TransportListener } from '../../src/index';

/** A clock that only moves when told to; timers fire in order as time passes. */
export class FakeClock implements Clock {
  private t: number;
  private timers: { at: number; every: number; fn: () => void; live: boolean }[] = [];

  constructor(start = Date.UTC(2026, 10, 26, 12, 0, 0)) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  every(ms: number, fn: () => void): () => void {
    const timer = { at: this.t + ms, every: ms, fn, live: true };
    this.timers.push(timer);
    return () => {
      timer.live = false;
    };
  }

  after(ms: number, fn: () => void): () => void {
    const timer = { at: this.t + ms, every: 0, fn, live: true };
    this.timers.push(timer);
    return () => {
      timer.live = false;
    };
  }

  /** Move time forward by `ms`, firing due timers at their own times. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((x) => x.live && x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.t = due.at;
      if (due.every > 0) due.at += due.every;
      else due.live = false;
      due.fn();
    }
    this.t = end;
    this.timers = this.timers.filter((x) => x.live);
  }

  /** Live timers (to check that close() clears them). */
  get activeTimers(): number {
    return this.timers.filter((x) => x.live).length;
  }
}

/** A transport that records everything the hub does to it. */
export class FakeTransport implements Transport {
  readonly sent: Record<string, unknown>[] = [];
  readonly texts: string[] = [];
  closedWith: { code: number; reason: string } | undefined;
  terminated = false;
  pings = 0;
  paused = false;
  bufferedAmount = 0;
  /** Set by the test after `ticket.open`. */
  listener!: TransportListener;
  /** When true, close() completes the handshake at once (as a responsive peer would). */
  autoClose = true;

  send(message: Outbound): number {
    if (this.closedWith || this.terminated) return 0;
    this.texts.push(message.text);
    this.sent.push(JSON.parse(message.text) as Record<string, unknown>);
    return this.bufferedAmount;
  }

  close(code: number, reason: string): void {
    if (this.closedWith) return;
    this.closedWith = { code, reason };
    if (this.autoClose) this.listener?.onClose(code, reason);
  }

  terminate(): void {
    this.terminated = true;
  }

  ping(): void {
    this.pings++;
  }

  /** Payloads of the pongs the hub answered pings with. */
  readonly pongs: Uint8Array[] = [];

  pong(payload: Uint8Array): void {
    this.pongs.push(payload);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  /** Deliver a text frame from the client. */
  text(data: string): void {
    this.listener.onMessage(data, false, Buffer.byteLength(data));
  }

  /** Deliver a JSON frame from the client. */
  json(obj: unknown): void {
    this.text(JSON.stringify(obj));
  }

  /** Remove and return what was sent so far. */
  take(): Record<string, unknown>[] {
    const out = this.sent.splice(0);
    this.texts.splice(0);
    return out;
  }
}

/** Admit and open a fake connection; throws if the hub refuses it. */
export async function connect(
  hub: import('../../src/index').Hub,
  url = '/ws',
  headers: Record<string, string> = {},
  remoteAddress = '10.0.0.1',
): Promise<FakeTransport> {
  const admission = await adapterHandle(hub).admit({ url, headers, remoteAddress });
  if (!admission.accepted) throw new Error(`refused with ${admission.status} (${admission.reason})`);
  const t = new FakeTransport();
  t.listener = admission.ticket.open(t);
  return t;
}

/** The fake clock's start in the core's unit tests: 2026-11-26 12:00:00 UTC. */
export const T0 = Date.UTC(2026, 10, 26, 12, 0, 0);
/** {@link T0} in Unix seconds, as frames carry it. */
export const SEC = Math.floor(T0 / 1000);

/** A hub on a fake clock started at {@link T0}, with a message rate no test reaches unless `options` says otherwise. */
export function hubOnFakeClock(options: HubOptions = {}) {
  const clock = new FakeClock(T0);
  const hub = createHub({ clock, messageRate: '1000/s,1000', ...options });
  return { clock, hub };
}
