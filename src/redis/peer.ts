/** Loading an optional peer dependency (`redis`) only when it is used. */
import { createRequire } from 'node:module';
import { RoomwireError } from '../core/errors';

/**
 * `load(require)` with a `require` from roomwire's own location (the package `name`), or an `ERR_INVALID_ARGUMENT`
 * {@link RoomwireError} that says which package to install.
 *
 * @internal
 */
export function loadPeer<T>(name: string, usedFor: string, load: (require: NodeJS.Require) => unknown): T {
  try {
    return load(createRequire(import.meta.url)) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' && String((err as Error).message).includes(`'${name}'`)) {
      throw new RoomwireError('ERR_INVALID_ARGUMENT', `${usedFor} needs the "${name}" package: npm install ${name}`, { cause: err });
    }
    throw err;
  }
}

/** Whether `err` is Redis's error answer (node-redis ErrorReply, ioredis ReplyError), not a lost connection. @internal */
export function isRedisReply(err: unknown): boolean {
  for (let p: unknown = err === null || typeof err !== 'object' ? null : Object.getPrototypeOf(err); p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    const name = (p as { constructor?: { name?: string } }).constructor?.name;
    if (name === 'ErrorReply' || name === 'ReplyError') return true;
  }
  return false;
}
