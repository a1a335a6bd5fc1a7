/** The `roomwire` command's process handling: signals, exit codes. Not a public API. */
import type { RoomwireError } from '../core/errors';
import { startServer, type RunningServer } from './standalone';

/**
 * Run the standalone server as a process: start it, and on SIGTERM or SIGINT close
 * every client with 1001 (spread over `WEBSOCKET_DRAIN_WINDOW` when it is set) and exit 0
 * once the last is closed. A bad configuration prints every bad variable and exits with
 * status 2 before listening.
 */
export async function main(env: Record<string, string | undefined> = process.env): Promise<void> {
  // Handlers go in before listening so a signal that arrives right after the
  // "listening" line still shuts down gracefully.
  let running: RunningServer | undefined;
  let stopping: string | undefined;
  const stop = (signal: string) => {
    if (stopping !== undefined) return;
    stopping = signal;
    if (running === undefined) return; // startServer resolves, then stops at once
    const drain = running.hub.config.drainWindow;
    const msg = `${signal} received, ${drain > 0 ? `draining connections over ${drain} ms` : 'closing connections'}`;
    process.stdout.write(`${JSON.stringify({ level: 'info', time: Date.now(), msg, connections: running.hub.size })}\n`);
    running.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`roomwire: shutdown failed: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  // `on`, not `once`: a second signal during the graceful window must not kill the
  // process with the default handler; stop() ignores repeats.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  try {
    running = await startServer({ env });
  } catch (err) {
    const e = err as RoomwireError;
    console.error(`roomwire: ${e.code === 'ERR_INVALID_CONFIG' ? e.message : `cannot start: ${e.message}`}`);
    process.exit(2);
  }
  if (stopping !== undefined) {
    const signal = stopping;
    stopping = undefined;
    stop(signal);
  }
}
