/** A real `redis-server` process on a free loopback port, for the scale-out tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

/** A free TCP port on 127.0.0.1 (free when asked; the caller binds it right away). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Send one inline command and resolve with the raw reply text. */
export function redisCommand(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.setTimeout(2000, () => socket.destroy(new Error('redis did not answer')));
    socket.on('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.endsWith('\r\n')) {
        socket.end();
        resolve(text);
      }
    });
    socket.on('error', reject);
  });
}

/** One redis-server: nothing persisted, so a restart comes back empty. */
export class RedisServer {
  private child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    private readonly args: readonly string[],
  ) {}

  /** Start a server on a free port (or on `port`), with extra arguments, and wait until it answers. */
  static async start(port?: number, args: readonly string[] = []): Promise<RedisServer> {
    const server = new RedisServer(port ?? (await freePort()), args);
    await server.restart();
    return server;
  }

  /** `redis://127.0.0.1:PORT`. */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** (Re)start the process on the same port, empty. */
  async restart(): Promise<void> {
    if (this.child !== undefined) throw new Error('redis-server is running');
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...this.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const failed = new Promise<never>((_, reject) => {
      child.once('error', (err) => reject(new Error(`cannot run redis-server (is it installed?): ${err.message}`)));
      child.once('exit', (code) => reject(new Error(`redis-server exited with ${String(code)}: ${output}`)));
    });
    failed.catch(() => {});
    const deadline = Date.now() + 10_000;
    for (;;) {
      const pong = await Promise.race([redisCommand(this.port, 'PING').catch(() => ''), failed]);
      if (pong === '+PONG\r\n' || pong.startsWith('-NOAUTH')) return;
      if (Date.now() > deadline) throw new Error(`redis-server did not start: ${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Freeze the process (SIGSTOP): its sockets stay open and nothing answers. */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  /** Thaw a paused process (SIGCONT). */
  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** Kill the process at once (SIGKILL: Redis "goes away") and wait for it to exit. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    this.child = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }
}
