/**
 * The standalone server's logger: one JSON object per line on stdout, pino-style
 * (`level`, `time`, `msg` and the fields), filtered by `LOG_LEVEL`.
 */
import type { Logger } from '../core/types';

/** Levels in increasing severity; `silent` logs nothing. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;

/** A `LOG_LEVEL` value. */
export type LogLevel = (typeof LOG_LEVELS)[number];

function serialize(value: unknown): unknown {
  if (value instanceof Error) {
    const e = value as Error & { code?: unknown };
    return { type: e.name, message: e.message, ...(e.code === undefined ? {} : { code: e.code }), stack: e.stack, ...(e.cause === undefined ? {} : { cause: serialize(e.cause) }) };
  }
  return value;
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
      const entry: Record<string, unknown> = { level: name, time: Date.now() };
      for (const [k, v] of Object.entries(fields)) if (v !== undefined) entry[k] = serialize(v);
      if (message !== undefined) entry.msg = message;
      write(`${JSON.stringify(entry)}\n`);
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
