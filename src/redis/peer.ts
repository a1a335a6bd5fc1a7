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

/** Node's certificate verification codes and OpenSSL's handshake errors. */
const TLS_CODE = /^ERR_(SSL|TLS)_|CERT|SELF_SIGNED|^UNABLE_TO_|^INVALID_(CA|PURPOSE)$|^HOSTNAME_MISMATCH$|^PATH_LENGTH_EXCEEDED$/;

/** An error and the errors it wraps (`cause`; ioredis's `lastNodeError`). */
function* chain(err: unknown): Generator<Error> {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; depth++) {
    yield e;
    const next = (e as { cause?: unknown; lastNodeError?: unknown }).cause ?? (e as { lastNodeError?: unknown }).lastNodeError;
    if (next === e) return;
    e = next;
  }
}

/**
 * When `err` is a failed TLS handshake (the server's certificate is not trusted, does not
 * name the host, or the server refused this client's certificate), an error saying so in
 * words, with `err` as its cause; otherwise undefined. For both adapters.
 *
 * @internal
 */
export function tlsFailure(err: unknown): Error | undefined {
  for (const e of chain(err)) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code !== 'string' || !TLS_CODE.test(code)) continue;
    // OpenSSL's messages are long (`...:ssl3_read_bytes:tlsv13 alert certificate required:../deps/...`).
    const alert = /alert ([a-z ]+)/i.exec(e.message)?.[1]?.trim();
    let what: string;
    if (code.includes('CERTIFICATE_REQUIRED')) what = 'the server requires a client certificate and none was given';
    else if (code.includes('_ALERT_')) what = `the server refused this client's certificate (${alert ?? code})`;
    else if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH') what = `the server's certificate does not name this host (${e.message})`;
    else what = `the server's certificate is not trusted (${e.message}, ${code}); is the right CA given?`;
    return new Error(`TLS handshake failed: ${what}`, { cause: e });
  }
  return undefined;
}

/**
 * What retrying will not mend until someone acts (a refused login or command, a failed TLS
 * handshake), reported through `report`: a TLS failure once per streak, until
 * {@link Problems.cleared}. Shared by both adapters.
 *
 * @internal
 */
export class Problems {
  private tlsReported = false;

  constructor(private readonly report: (err: Error) => void) {}

  /** Report `err` if it is worth it; returns the error that says best why the side is down. */
  seen(err: Error): Error {
    const tls = tlsFailure(err);
    if (tls === undefined) {
      if (isRedisReply(err)) this.report(err);
      return err;
    }
    if (!this.tlsReported) {
      this.tlsReported = true;
      this.report(tls);
    }
    return tls;
  }

  /** The link is up: the next TLS failure starts a new streak. */
  cleared(): void {
    this.tlsReported = false;
  }
}
