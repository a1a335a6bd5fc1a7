/**
 * The standalone server's logger: one JSON object per line on stdout, pino-style
 * (`level`, `time`, `msg` and the fields), filtered by `LOG_LEVEL`.
 */
import type { Logger } from '../core/types';

/** Levels in increasing severity; `silent` logs nothing. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;

/** A `LOG_LEVEL` value. */
export type LogLevel = (typeof LOG_LEVELS)[number];

const MAX_CAUSES = 8;

/** An error as plain fields: its own `cause` chain (bounded, cycles cut), never its prototype. */
function errorFields(e: Error & { code?: unknown }, seen: Set<unknown>, depth: number): Record<string, unknown> {
  seen.add(e);
  const out: Record<string, unknown> = { type: e.name, message: e.message };
  if (e.code !== undefined) out.code = e.code;
  out.stack = e.stack;
  // Fields the application put on the error (pino's serializer keeps them too).
  for (const key of Object.keys(e)) if (!(key in out) && key !== 'cause') out[key] = (e as unknown as Record<string, unknown>)[key];
  const cause = e.cause;
  if (cause !== undefined) {
    if (seen.has(cause)) out.cause = '[Circular]';
    else if (depth >= MAX_CAUSES) out.cause = '[…]';
    else out.cause = cause instanceof Error ? errorFields(cause, seen, depth + 1) : cause;
  }
  return out;
}

/**
 * `JSON.stringify` that cannot throw on what log fields may hold: errors become plain
 * objects, BigInts strings, a repeated or circular reference `[Circular]`. Whatever still
 * throws (a getter, a `toJSON`) gives a line that says so instead of the entry.
 */
function stringifyEntry(entry: Record<string, unknown>): string {
  const seen = new Set<unknown>();
  try {
    return JSON.stringify(entry, function (this: unknown, key, value: unknown) {
      if (typeof value === 'bigint') return value.toString();
      if (typeof value !== 'object' || value === null) return value;
      if (key !== '' && seen.has(value)) return '[Circular]';
      seen.add(value);
      return value instanceof Error ? errorFields(value, seen, 0) : value;
    });
  } catch (err) {
    return JSON.stringify({ level: entry.level, time: entry.time, msg: typeof entry.msg === 'string' ? entry.msg : undefined, logError: `fields could not be written: ${String((err as Error)?.message ?? err)}` });
  }
}

/**
 * A {@link Logger} writing JSON lines at `level` and above to `write`.
 *
 * @example createJsonLogger('info').info({ port: 8080 }, 'listening')
 */
export function createJsonLogger(level: LogLevel = 'info', write: (line: string) => void = (l) => process.stdout.write(l)): Logger {
  const min = LOG_LEVELS.indexOf(level);
  const make = (name: Exclude<LogLevel, 'silent'>) => {
    if (LOG_LEVELS.indexOf(name) < min) return () => {};
    return (fields: object, message?: string) => {
      // A logger must never throw into the code that logs (a hostile client's input, a
      // failing broker): every step is guarded, and a line that cannot be written is dropped.
      try {
        const entry: Record<string, unknown> = { level: name, time: Date.now() };
        if (typeof fields === 'object' && fields !== null) {
          for (const [k, v] of Object.entries(fields)) if (v !== undefined) entry[k] = v;
        }
        if (message !== undefined) entry.msg = message;
        write(`${stringifyEntry(entry)}\n`);
      } catch {
        // stdout gone, or fields whose own getters throw: nothing left to report to.
      }
    };
  };
  return {
    debug: make('debug'),
    info: make('info'),
    warn: make('warn'),
    error: make('error'),
    isLevelEnabled: (name: string) => {
      const i = LOG_LEVELS.indexOf(name as LogLevel);
      return i >= min && i < LOG_LEVELS.indexOf('silent');
    },
  };
}
