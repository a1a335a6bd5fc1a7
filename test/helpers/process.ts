/** The standalone server as its own process (`node dist/bin/roomwire.js`), to kill and start again. */
import { spawn, type ChildProcess } from 'node:child_process';
import { sleep } from './client';
import { freePort } from './redis';

/** Poll `check` every 50 ms until it holds; fails after `timeout` ms. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeout: number): Promise<number> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > timeout) throw new Error(`${what}: not within ${timeout} ms`);
    await sleep(50);
  }
  return Date.now() - start;
}

/**
 * A roomwire process on a fixed port (a free one by default), started with `env`. `kill()`
 * ends it without a goodbye (SIGKILL); `start()` runs it again on the same port.
 */
export class ServerProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  output = '';

  private constructor(
    readonly port: number,
    private readonly env: Record<string, string>,
  ) {}

  static async start(env: Record<string, string> = {}, port?: number): Promise<ServerProcess> {
    const p = new ServerProcess(port ?? (await freePort()), env);
    await p.start();
    return p;
  }

  /** `ws://127.0.0.1:PORT`. */
  get base(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  async start(): Promise<void> {
    if (this.child !== undefined) throw new Error('already running');
    this.output = '';
    const child = spawn(process.execPath, ['dist/bin/roomwire.js'], {
      env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(this.port), LOG_LEVEL: 'warn', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
    await waitFor(`roomwire on ${this.port} listens`, () => this.output.includes('listening on'), 10_000).catch(async (err: unknown) => {
      await this.kill();
      throw new Error(`${(err as Error).message}\n${this.output}`);
    });
  }

  /** SIGKILL: every connection drops at once, without a close frame. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    this.child = undefined;
    child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM: a graceful shutdown (1001 to every client). */
  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    this.child = undefined;
    child.kill('SIGTERM');
    await this.exited;
  }
}
