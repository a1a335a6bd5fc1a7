/** Small helpers shared by the core's modules. */
import type { UpgradeRequest } from './types';

/** True for a promise or any thenable: hooks may answer synchronously or not. */
export function isPromise<T>(v: unknown): v is Promise<T> {
  return typeof (v as Promise<T> | undefined)?.then === 'function';
}

/** The first value of a request header (Node gives repeated headers as an array). */
export function firstHeader(req: UpgradeRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? (v[0] as string | undefined) : (v as string | undefined);
}

/** Does nothing; the cancel function of a timer that was never set. */
export function noop(): void {}
