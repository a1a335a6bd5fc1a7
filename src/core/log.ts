/** The hub's logger: silent by default, and never able to throw into the hub. */
import type { Logger } from './types';
import { noop } from './util';

/** The logger of a hub created without one. */
export const SILENT: Logger = { error: noop, warn: noop, info: noop, debug: noop };

/**
 * The application's logger, made unable to throw into the hub: logging happens in the
 * middle of handling a frame, a close or a broker failure, and a logger that chokes on a
 * field (a circular object, a BigInt) must not break any of them.
 */
export function guardLogger(log: Logger): Logger {
  const wrap = (level: 'error' | 'warn' | 'info' | 'debug') => (fields: object, message?: string) => {
    try {
      log[level](fields, message);
    } catch {
      // nowhere left to report a logger that throws
    }
  };
  return {
    error: wrap('error'),
    warn: wrap('warn'),
    info: wrap('info'),
    debug: wrap('debug'),
    isLevelEnabled: (level: string) => {
      try {
        return log.isLevelEnabled?.(level) ?? true;
      } catch {
        return true;
      }
    },
  };
}
