/**
 * Real Redis topologies on free loopback ports, for the integration tests: a cluster (3 masters,
 * 3 replicas; plain or TLS only), a sentinel setup (1 master, 1 replica, 3 sentinels) and a TLS
 * server with its own CA. Every process is a `redis-server` (7.0 or later; sentinels are
 * `redis-server --sentinel`) in its own temp dir, nothing persisted; `stop()` kills the
 * processes and removes the dirs. Needs `redis-server`, `redis-cli` (cluster creation) and
 * `openssl` (TLS certificates).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { freePort } from './redis';

// ---------------------------------------------------------------------------------------------
// RESP: one command, one fully parsed reply

/** A parsed RESP2 reply: a simple or bulk string, an integer, nil, or an array of replies. */
export type RespReply = string | number | null | RespReply[];

/** An error reply from Redis (`-ERR ...`, `-NOGOOD ...`); `message` is the reply without the `-`. */
export class RedisReplyError extends Error {
  override readonly name = 'RedisReplyError';
}

type Parsed = { value: RespReply | RedisReplyError; next: number };

/** Parse one reply at `offset`; undefined while `buf` does not hold all of it yet. */
function parseReply(buf: Buffer, offset: number): Parsed | undefined {
  const lineEnd = buf.indexOf('\r\n', offset);
  if (lineEnd < 0) return undefined;
  const type = buf.toString('latin1', offset, offset + 1);
  const line = buf.toString('utf8', offset + 1, lineEnd);
  const after = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, next: after };
    case '-':
      return { value: new RedisReplyError(line), next: after };
    case ':':
      return { value: Number(line), next: after };
    case '$': {
      const length = Number(line);
      if (length < 0) return { value: null, next: after };
      if (buf.length < after + length + 2) return undefined;
      return { value: buf.toString('utf8', after, after + length), next: after + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, next: after };
      const items: RespReply[] = [];
      let next = after;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, next);
        if (item === undefined) return undefined;
        // An error inside an array (EXEC) fails the whole command: these helpers never expect one.
        if (item.value instanceof RedisReplyError) return item;
        items.push(item.value);
        next = item.next;
      }
      return { value: items, next };
    }
    default:
      throw new Error(`unexpected RESP reply type ${JSON.stringify(type)}`);
  }
}

/** Send one command (as a RESP array) on a fresh socket and resolve with its parsed reply. */
function sendCommand(socket: net.Socket, args: readonly (string | number)[], timeoutMs: number): Promise<RespReply> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(new Error(`no reply to ${String(args[0])} within ${timeoutMs} ms`)), timeoutMs);
    const done = (err: Error | undefined, value?: RespReply) => {
      clearTimeout(timer);
      socket.destroy();
      if (err !== undefined) reject(err);
      else resolve(value ?? null);
    };
    socket.on('error', (err) => done(err));
    socket.on('close', () => done(new Error(`connection closed before the reply to ${String(args[0])}`)));
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      let parsed: Parsed | undefined;
      try {
        parsed = parseReply(buf, 0);
      } catch (err) {
        done(err as Error);
        return;
      }
      if (parsed === undefined) return;
      socket.removeAllListeners('close');
      if (parsed.value instanceof RedisReplyError) done(parsed.value);
      else done(undefined, parsed.value);
    });
    const parts = args.map(String);
    socket.write(`*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`);
  });
}

/**
 * Send one command to 127.0.0.1:`port` and resolve with its fully parsed reply (multi-line bulk
 * replies such as CLUSTER NODES included). An error reply rejects with a {@link RedisReplyError};
 * no reply within `timeoutMs` rejects too.
 */
export function redisQuery(port: number, args: readonly (string | number)[], timeoutMs = 2000): Promise<RespReply> {
  return sendCommand(net.connect(port, '127.0.0.1'), args, timeoutMs);
}

/** {@link redisQuery} or its TLS twin: one command to the node on 127.0.0.1:`port`. */
export type RedisQuery = (port: number, args: readonly (string | number)[], timeoutMs?: number) => Promise<RespReply>;

/**
 * {@link redisQuery} over TLS, trusting `files.ca` and showing the client certificate (for
 * servers with `--port 0`, which answer on their TLS port only).
 */
function tlsQuery(files: { ca: Buffer; cert: Buffer; key: Buffer }): RedisQuery {
  return (port, args, timeoutMs = 2000) => sendCommand(tls.connect({ host: '127.0.0.1', port, ...files }), args, timeoutMs);
}

// ---------------------------------------------------------------------------------------------
// Processes, ports, temp dirs, bounded waits

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Ports this module handed out: a second freePort() call may return one not yet bound. */
const handedOut = new Set<number>();

/** A free loopback port this module has not handed out before. */
async function uniquePort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/** Every process started here and not yet reaped, for the last-resort cleanup on exit. */
const running = new Set<RedisProcess>();
/** Every temp dir made here and not yet removed, likewise. */
const tempDirs = new Set<string>();
let exitHookInstalled = false;

/** If a test process ends without stop() (a crash, a forgotten afterAll), kill what it started. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const p of running) p.child.kill('SIGKILL');
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/** The pids of the processes started by this module that are still running (for leak checks). */
export function runningTopologyPids(): number[] {
  return [...running].flatMap((p) => (p.child.pid === undefined ? [] : [p.child.pid]));
}

const OUTPUT_LIMIT = 16_000;

/** One redis-server process in its own temp dir, with its output kept for error messages. */
class RedisProcess {
  private log = '';
  private gone = false;
  private expectedExit = false;
  readonly exited: Promise<void>;

  constructor(
    readonly label: string,
    readonly port: number,
    readonly dir: string,
    readonly child: ChildProcess,
  ) {
    installExitHook();
    running.add(this);
    const keep = (d: Buffer) => {
      this.log += d.toString();
      if (this.log.length > OUTPUT_LIMIT) this.log = this.log.slice(-OUTPUT_LIMIT);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise<void>((resolve) => {
      const end = (why: string) => {
        if (this.gone) return;
        this.gone = true;
        running.delete(this);
        if (!this.expectedExit) this.log += `\n[${why}]`;
        resolve();
      };
      child.once('exit', (code, signal) => end(`exited with ${signal ?? `code ${String(code)}`}`));
      child.once('error', (err) => end(`cannot run redis-server (is it installed?): ${err.message}`));
    });
  }

  /** False once the process has exited. */
  get alive(): boolean {
    return !this.gone;
  }

  /** True when the process exited without being asked to. */
  get crashed(): boolean {
    return this.gone && !this.expectedExit;
  }

  /** The process output, under a header naming it. */
  output(): string {
    return `--- ${this.label} (port ${this.port}) ---\n${this.log.trimEnd()}`;
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill(): Promise<void> {
    this.expectedExit = true;
    if (this.gone) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** Kill, then remove the temp dir. */
  async stop(): Promise<void> {
    await this.kill();
    await removeTempDir(this.dir);
  }
}

/** A new temp dir, removed by {@link removeTempDir} (or, at the latest, when the process exits). */
async function makeTempDir(prefix: string): Promise<string> {
  installExitHook();
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** Remove a dir made by {@link makeTempDir}. */
async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/** All the outputs, for an error message. */
const outputs = (procs: readonly RedisProcess[]) => procs.map((p) => p.output()).join('\n');

/**
 * Poll `probe` every 100 ms until it returns; it throws while the condition does not hold yet
 * (its message is the state reported on failure). Fails at once when one of `procs` died
 * unexpectedly, and after `timeoutMs`; both errors carry the processes' output.
 */
async function waitFor<T>(what: string, timeoutMs: number, procs: readonly RedisProcess[], probe: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = 'not checked yet';
  for (;;) {
    const dead = procs.find((p) => p.crashed);
    if (dead !== undefined) throw new Error(`${what}: ${dead.label} (port ${dead.port}) died\n${outputs(procs)}`);
    try {
      return await probe();
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${last})\n${outputs(procs)}`);
    await sleep(100);
  }
}

/** `PING` answers `+PONG`. */
async function pingable(port: number): Promise<void> {
  const reply = await redisQuery(port, ['PING']);
  if (reply !== 'PONG') throw new Error(`PING answered ${JSON.stringify(reply)}`);
}

const ADDRESS_IN_USE = /address already in use|failed listening on port/i;

/**
 * Start `redis-server args(port, dir)` in a new temp dir on a free port and wait (10 s) until
 * `ready(port)` passes. A port taken in the meantime by someone else is retried with another.
 */
async function launch(
  label: string,
  args: (port: number, dir: string) => Promise<readonly string[]>,
  ready: (port: number) => Promise<void> = pingable,
): Promise<RedisProcess> {
  const dir = await makeTempDir('roomwire-redis-');
  for (let attempt = 1; ; attempt++) {
    const port = await uniquePort();
    let proc: RedisProcess | undefined;
    try {
      const argv = await args(port, dir);
      const child = spawn('redis-server', [...argv], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      proc = new RedisProcess(label, port, dir, child);
      const p = proc;
      await waitFor(`${label} did not start`, 10_000, [p], () => ready(port));
      return p;
    } catch (err) {
      await proc?.kill();
      const retry = attempt < 3 && proc !== undefined && ADDRESS_IN_USE.test(proc.output());
      if (!retry) {
        await removeTempDir(dir);
        throw err;
      }
    }
  }
}

/**
 * The options every data node gets: loopback only, nothing persisted, its own dir, and a replica's
 * full sync at once (Redis 7 waits 5 s by default for more replicas to share a diskless sync).
 */
const dataArgs = (port: number, dir: string) => [
  '--port', String(port),
  '--bind', '127.0.0.1',
  '--save', '',
  '--appendonly', 'no',
  '--dir', dir,
  '--repl-diskless-sync-delay', '0',
];

/** Start several processes at once; if one fails, stop the others and rethrow. */
async function launchAll(starts: readonly (() => Promise<RedisProcess>)[]): Promise<RedisProcess[]> {
  const results = await Promise.allSettled(starts.map((s) => s()));
  const procs = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(procs.map((p) => p.stop()));
    throw failed.reason;
  }
  return procs;
}

/** Run a command line tool; resolves with stdout+stderr, rejects with them on failure or timeout. */
function run(file: string, args: readonly string[], options: { cwd?: string; timeoutMs: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, [...args], { cwd: options.cwd, timeout: options.timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const text = `${stdout}${stderr}`;
      if (err === null) resolve(text);
      else if ((err as { code?: unknown }).code === 'ENOENT') reject(new Error(`cannot run ${file} (is it installed?)`));
      else reject(new Error(`${file} ${args.join(' ')} failed (${err.message.split('\n')[0] ?? ''}):\n${text}`));
    });
  });
}

/** `field:value` lines of an INFO-style reply. */
function infoFields(reply: RespReply): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of String(reply).split(/\r?\n/)) {
    const at = line.indexOf(':');
    if (at > 0) fields.set(line.slice(0, at), line.slice(at + 1).trim());
  }
  return fields;
}

/** A replica's INFO replication says its link to the master is up. */
async function replicaLinkUp(port: number, query: RedisQuery = redisQuery): Promise<void> {
  const info = infoFields(await query(port, ['INFO', 'replication']));
  if (info.get('role') !== 'slave' || info.get('master_link_status') !== 'up') {
    throw new Error(`port ${port}: role:${info.get('role') ?? '?'} master_link_status:${info.get('master_link_status') ?? '?'}`);
  }
}

/** The first element of ROLE: 'master', 'slave' or 'sentinel'. */
async function roleOf(port: number, query: RedisQuery = redisQuery): Promise<string> {
  const reply = await query(port, ['ROLE']);
  return Array.isArray(reply) ? String(reply[0]) : String(reply);
}

// ---------------------------------------------------------------------------------------------
// Cluster

/** One cluster node: its port and the role it had when the cluster was created. */
export interface ClusterNode {
  readonly port: number;
  readonly role: 'master' | 'replica';
}

/** A running 6-node Redis Cluster (3 masters, 3 replicas) on 127.0.0.1. */
export interface RedisCluster {
  /** Every node with its role when the cluster was created (a snapshot: failovers do not change it). */
  readonly nodes: readonly ClusterNode[];
  /** `redis://127.0.0.1:PORT` (`rediss://` with TLS) of the masters at creation, as root nodes for a cluster client. */
  readonly seeds: readonly string[];
  /** With `tls`: the CA that signed every node's certificate, and a client certificate (not required). */
  readonly tls: TlsFiles | undefined;
  /** One command to the node on `port`, over TLS for a TLS cluster. */
  query: RedisQuery;
  /** The port of the master serving `key`'s slot now (CLUSTER KEYSLOT + CLUSTER SLOTS on a live node). */
  masterFor(key: string): Promise<number>;
  /** SIGKILL the node on `port` (no goodbye to the cluster) and wait until the process is gone. */
  killNode(port: number): Promise<void>;
  /**
   * After {@link RedisCluster.killNode} of a master: wait (20 s at most) until one of its replicas
   * is a master (in its ROLE and in every survivor's CLUSTER NODES) and every survivor reports
   * `cluster_state:ok`. Resolves with the promoted replica's port.
   */
  waitForPromotion(killedPort: number): Promise<number>;
  /** Kill every node and remove their temp dirs (safe to call twice). */
  stop(): Promise<void>;
}

type NodeLine = { id: string; port: number; flags: Set<string>; masterId: string | undefined; line: string };

/** Parse CLUSTER NODES: `<id> <ip:port@cport[,hostname]> <flags> <master|-> ...`. */
function parseClusterNodes(reply: RespReply): NodeLine[] {
  return String(reply)
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((line) => {
      const [id = '', address = '', flags = '', master = '-'] = line.split(' ');
      const port = Number(address.split('@')[0]?.split(':').pop());
      return { id, port, flags: new Set(flags.split(',')), masterId: master === '-' ? undefined : master, line };
    });
}

const BAD_NODE_FLAGS = ['fail', 'fail?', 'handshake', 'noaddr'];

/** One node's view is the whole healthy cluster: state ok, all slots, 3 + 3 nodes, replica linked. */
async function clusterNodeReady(port: number, query: RedisQuery): Promise<void> {
  const info = infoFields(await query(port, ['CLUSTER', 'INFO']));
  const state = ['cluster_state', 'cluster_slots_assigned', 'cluster_slots_ok', 'cluster_known_nodes'].map((k) => `${k}:${info.get(k) ?? '?'}`);
  if (state.join(' ') !== 'cluster_state:ok cluster_slots_assigned:16384 cluster_slots_ok:16384 cluster_known_nodes:6') {
    throw new Error(`port ${port}: ${state.join(' ')}`);
  }
  const nodes = parseClusterNodes(await query(port, ['CLUSTER', 'NODES']));
  const masters = nodes.filter((n) => n.flags.has('master'));
  const replicas = nodes.filter((n) => n.flags.has('slave'));
  const unhealthy = nodes.filter((n) => BAD_NODE_FLAGS.some((f) => n.flags.has(f)));
  const orphans = replicas.filter((r) => !masters.some((m) => m.id === r.masterId));
  if (nodes.length !== 6 || masters.length !== 3 || replicas.length !== 3 || unhealthy.length > 0 || orphans.length > 0) {
    throw new Error(`port ${port}: CLUSTER NODES is\n${nodes.map((n) => n.line).join('\n')}`);
  }
  if (nodes.find((n) => n.flags.has('myself'))?.flags.has('slave') === true) await replicaLinkUp(port, query);
}

/**
 * Start a Redis Cluster of 6 nodes on free ports (`--cluster-enabled yes`, node timeout 2 s,
 * bus ports free ports too), create it with `redis-cli --cluster create ... --cluster-replicas 1`
 * and wait (20 s at most) until every node reports `cluster_state:ok` with all 16384 slots, knows
 * all 6 nodes, and every replica's link to its master is up (a replica that never synced would
 * refuse to fail over). Everything started is stopped again if this fails.
 *
 * With `tls` (default false), the nodes speak TLS only, with certificates of a CA made here
 * (see {@link TlsFiles}): `--port 0 --tls-port PORT`, and TLS on the cluster bus and for
 * replication too (`--tls-cluster yes --tls-replication yes`); client certificates are not
 * required. The cluster is created with `redis-cli --tls --cacert`, and every helper query
 * goes over TLS.
 */
export async function startRedisCluster(options: { tls?: boolean } = {}): Promise<RedisCluster> {
  let files: TlsFiles | undefined;
  let query: RedisQuery = redisQuery;
  let certDir: string | undefined;
  if (options.tls === true) {
    certDir = await makeTempDir('roomwire-tls-');
    try {
      files = await makeCertificates(certDir);
      const [ca, cert, key] = await Promise.all([readFile(files.ca), readFile(files.clientCert), readFile(files.clientKey)]);
      query = tlsQuery({ ca, cert, key });
    } catch (err) {
      await removeTempDir(certDir);
      throw err;
    }
  }
  const tlsArgs = (port: number): string[] =>
    files === undefined
      ? []
      : [
          '--tls-port', String(port),
          '--tls-cert-file', files.cert,
          '--tls-key-file', files.key,
          '--tls-ca-cert-file', files.ca,
          '--tls-auth-clients', 'no',
          '--tls-cluster', 'yes',
          '--tls-replication', 'yes',
        ];
  let procs: RedisProcess[];
  try {
    procs = await launchAll(
      Array.from({ length: 6 }, (_, i) => () =>
        launch(
          `cluster node ${i + 1}${files === undefined ? '' : ' (TLS)'}`,
          async (port, dir) => [
            ...dataArgs(files === undefined ? port : 0, dir),
            ...tlsArgs(port),
            '--cluster-enabled', 'yes',
            '--cluster-config-file', path.join(dir, 'nodes.conf'),
            '--cluster-node-timeout', '2000',
            '--cluster-port', String(await uniquePort()),
            '--cluster-announce-ip', '127.0.0.1',
          ],
          async (port) => {
            const reply = await query(port, ['PING']);
            if (reply !== 'PONG') throw new Error(`PING answered ${JSON.stringify(reply)}`);
          },
        ),
      ),
    );
  } catch (err) {
    if (certDir !== undefined) await removeTempDir(certDir);
    throw err;
  }
  const killed = new Set<number>();
  const stop = async () => {
    await Promise.all(procs.map((p) => p.stop()));
    if (certDir !== undefined) await removeTempDir(certDir);
  };
  try {
    const cliTls = files === undefined ? [] : ['--tls', '--cacert', files.ca];
    const cli = await run('redis-cli', [...cliTls, '--cluster', 'create', ...procs.map((p) => `127.0.0.1:${p.port}`), '--cluster-replicas', '1', '--cluster-yes'], {
      timeoutMs: 20_000,
    }).catch((err: Error) => {
      throw new Error(`${err.message}\n${outputs(procs)}`);
    });
    await waitFor('cluster did not become ok', 20_000, procs, async () => {
      await Promise.all(procs.map((p) => clusterNodeReady(p.port, query)));
    }).catch((err: Error) => {
      throw new Error(`${err.message}\n--- redis-cli --cluster create ---\n${cli}`);
    });
    const view = parseClusterNodes(await query(procs[0]!.port, ['CLUSTER', 'NODES']));
    const idOf = new Map(view.map((n) => [n.port, n.id]));
    const nodes: ClusterNode[] = procs.map((p) => ({ port: p.port, role: view.find((n) => n.port === p.port)?.flags.has('master') === true ? 'master' : 'replica' }));
    /** The master port each replica followed at creation (and after promotions, the new one). */
    const replicaOf = new Map<number, number>();
    for (const n of view) {
      const master = view.find((m) => m.id === n.masterId);
      if (master !== undefined) replicaOf.set(n.port, master.port);
    }
    const live = () => procs.filter((p) => !killed.has(p.port));

    /** Ask live nodes in turn until one answers. */
    const ask = async (args: readonly (string | number)[]): Promise<RespReply> => {
      let last: unknown = new Error('no live cluster node');
      for (const p of live()) {
        try {
          return await query(p.port, args);
        } catch (err) {
          last = err;
        }
      }
      throw last;
    };

    return {
      nodes,
      seeds: nodes.filter((n) => n.role === 'master').map((n) => `${files === undefined ? 'redis' : 'rediss'}://127.0.0.1:${n.port}`),
      tls: files,
      query,

      async masterFor(key) {
        const slot = Number(await ask(['CLUSTER', 'KEYSLOT', key]));
        const ranges = (await ask(['CLUSTER', 'SLOTS'])) as RespReply[][];
        for (const [start, end, master] of ranges) {
          if (slot >= Number(start) && slot <= Number(end) && Array.isArray(master)) return Number(master[1]);
        }
        throw new Error(`no master serves slot ${slot} (key ${JSON.stringify(key)}): ${JSON.stringify(ranges)}`);
      },

      async killNode(port) {
        const proc = procs.find((p) => p.port === port);
        if (proc === undefined) throw new Error(`no cluster node on port ${port}`);
        killed.add(port);
        await proc.kill();
      },

      async waitForPromotion(killedPort) {
        if (!killed.has(killedPort)) throw new Error(`node ${killedPort} was not killed`);
        const candidates = [...replicaOf].filter(([r, m]) => m === killedPort && !killed.has(r)).map(([r]) => r);
        if (candidates.length === 0) throw new Error(`no live replica of ${killedPort} to promote`);
        const killedId = idOf.get(killedPort);
        const survivors = live();
        const promoted = await waitFor(`no replica of ${killedPort} promoted`, 20_000, survivors, async () => {
          const views = await Promise.all(survivors.map(async (p) => ({ port: p.port, nodes: parseClusterNodes(await query(p.port, ['CLUSTER', 'NODES'])) })));
          const winner = candidates.find((c) => views.every((v) => v.nodes.find((n) => n.port === c)?.flags.has('master') === true));
          if (winner === undefined) {
            throw new Error(`replicas ${candidates.join(', ')} not master in every view:\n${views.map((v) => `port ${v.port}:\n${v.nodes.map((n) => n.line).join('\n')}`).join('\n')}`);
          }
          const role = await roleOf(winner, query);
          if (role !== 'master') throw new Error(`${winner} answers ROLE ${role}`);
          const staleView = views.find((v) => !(v.nodes.find((n) => n.id === killedId)?.flags.has('fail') ?? true));
          if (staleView !== undefined) throw new Error(`port ${staleView.port} does not see ${killedPort} as failed yet`);
          for (const p of survivors) {
            const state = infoFields(await query(p.port, ['CLUSTER', 'INFO'])).get('cluster_state');
            if (state !== 'ok') throw new Error(`port ${p.port}: cluster_state:${state ?? '?'}`);
          }
          return winner;
        });
        replicaOf.delete(promoted);
        for (const [r, m] of replicaOf) if (m === killedPort) replicaOf.set(r, promoted);
        return promoted;
      },

      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Sentinel

/** A running sentinel setup on 127.0.0.1: one master, one replica, three sentinels. */
export interface SentinelSetup {
  /** The monitored master's name, `mymaster`. */
  readonly name: string;
  /** The three sentinels, as root nodes for a sentinel client. */
  readonly sentinels: readonly { readonly host: '127.0.0.1'; readonly port: number }[];
  /** `redis://127.0.0.1:PORT` of each sentinel. */
  readonly sentinelUrls: readonly string[];
  /** The ports of the two data nodes (the first was the master at start). */
  readonly dataPorts: readonly [number, number];
  /** The master's port, as a sentinel reports it (SENTINEL GET-MASTER-ADDR-BY-NAME). */
  masterPort(): Promise<number>;
  /**
   * SENTINEL FAILOVER, then wait (20 s at most) until every sentinel reports the other data node
   * as master and that node answers ROLE as master; resolves with its port.
   *
   * The sentinels turn the old master into a replica on their own schedule (+convert-to-slave,
   * about 10 s later); until then both nodes answer ROLE as master and a write to the old one is
   * lost. So, first, this waits (15 s at most) until the other node is a replica of the current
   * master with its link up: right after an earlier failover() that is those ~10 s (without the
   * wait, the sentinels would "promote" a node that is still a master, with diverged data). With
   * `waitForOldMaster`, it also waits (30 s at most) until the old master is a linked replica of
   * the new one before resolving.
   */
  failover(options?: { waitForOldMaster?: boolean }): Promise<number>;
  /** Kill the sentinels and the data nodes and remove their temp dirs (safe to call twice). */
  stop(): Promise<void>;
}

const SENTINEL_NAME = 'mymaster';

/** A SENTINEL REPLICAS / SENTINELS entry (a flat field, value, field, value ... array) as a map. */
function fieldsOf(entry: RespReply): Map<string, string> {
  const fields = new Map<string, string>();
  if (Array.isArray(entry)) for (let i = 0; i + 1 < entry.length; i += 2) fields.set(String(entry[i]), String(entry[i + 1]));
  return fields;
}

/** Master port per SENTINEL GET-MASTER-ADDR-BY-NAME on the sentinel at `port`. */
async function sentinelMasterPort(port: number): Promise<number> {
  const reply = await redisQuery(port, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_NAME]);
  if (!Array.isArray(reply) || reply.length !== 2) throw new Error(`sentinel ${port}: GET-MASTER-ADDR-BY-NAME answered ${JSON.stringify(reply)}`);
  return Number(reply[1]);
}

/** ROLE on `port` says it replicates `masterPort` with its link up (`connected`). */
async function linkedReplicaOf(port: number, masterPort: number): Promise<void> {
  const role = await redisQuery(port, ['ROLE']);
  if (!Array.isArray(role) || role[0] !== 'slave' || Number(role[2]) !== masterPort || role[3] !== 'connected') {
    throw new Error(`${port} answers ROLE ${JSON.stringify(role)}, not a connected replica of ${masterPort}`);
  }
}

/**
 * Start a master, a replica (`--replicaof`) and three sentinels (`redis-server <conf> --sentinel`,
 * quorum 2, down-after 1 s, failover-timeout 5 s) on free ports, then wait (15 s at most) until the
 * replica is linked and every sentinel knows the replica and the two other sentinels. Everything
 * started is stopped again if this fails.
 */
export async function startSentinel(): Promise<SentinelSetup> {
  const procs: RedisProcess[] = [];
  const stop = async () => {
    // Sentinels first, so that none reacts to the data nodes going away.
    await Promise.all(procs.filter((p) => p.label.startsWith('sentinel ')).map((p) => p.stop()));
    await Promise.all(procs.map((p) => p.stop()));
  };
  try {
    const master = await launch('master', async (port, dir) => dataArgs(port, dir));
    procs.push(master);
    const replica = await launch('replica', async (port, dir) => [...dataArgs(port, dir), '--replicaof', '127.0.0.1', String(master.port)]);
    procs.push(replica);
    await waitFor('replica did not sync', 10_000, procs, () => replicaLinkUp(replica.port));
    const sentinels = await launchAll(
      [1, 2, 3].map((n) => () =>
        launch(`sentinel ${n}`, async (port, dir) => {
          const conf = path.join(dir, `sentinel-${n}.conf`);
          await writeFile(
            conf,
            [
              `port ${port}`,
              'bind 127.0.0.1',
              `dir ${dir}`,
              'sentinel resolve-hostnames no',
              `sentinel monitor ${SENTINEL_NAME} 127.0.0.1 ${master.port} 2`,
              `sentinel down-after-milliseconds ${SENTINEL_NAME} 1000`,
              `sentinel failover-timeout ${SENTINEL_NAME} 5000`,
              '',
            ].join('\n'),
          );
          return [conf, '--sentinel'];
        }),
      ),
    );
    procs.push(...sentinels);
    await waitFor('sentinels did not discover each other and the replica', 15_000, procs, async () => {
      for (const s of sentinels) {
        const replicas = (await redisQuery(s.port, ['SENTINEL', 'REPLICAS', SENTINEL_NAME])) as RespReply[];
        const linked = replicas.map(fieldsOf).filter((r) => r.get('port') === String(replica.port) && r.get('flags') === 'slave');
        if (linked.length !== 1) throw new Error(`sentinel ${s.port}: replicas ${JSON.stringify(replicas)}`);
        const others = ((await redisQuery(s.port, ['SENTINEL', 'SENTINELS', SENTINEL_NAME])) as RespReply[]).map(fieldsOf);
        if (others.length !== 2 || others.some((o) => o.get('flags') !== 'sentinel')) {
          throw new Error(`sentinel ${s.port}: knows ${others.length} other sentinels (${others.map((o) => `${o.get('port') ?? '?'}:${o.get('flags') ?? '?'}`).join(', ')})`);
        }
      }
    });
    const dataPorts = [master.port, replica.port] as const;

    const masterPort = async (): Promise<number> => {
      let last: unknown = new Error('no live sentinel');
      for (const s of sentinels.filter((p) => p.alive)) {
        try {
          return await sentinelMasterPort(s.port);
        } catch (err) {
          last = err;
        }
      }
      throw last;
    };

    return {
      name: SENTINEL_NAME,
      sentinels: sentinels.map((s) => ({ host: '127.0.0.1' as const, port: s.port })),
      sentinelUrls: sentinels.map((s) => `redis://127.0.0.1:${s.port}`),
      dataPorts,
      masterPort,

      async failover(options = {}) {
        const before = await masterPort();
        const next = before === dataPorts[0] ? dataPorts[1] : dataPorts[0];
        await waitFor(`${next} did not become a replica of ${before} to fail over to`, 15_000, procs, () => linkedReplicaOf(next, before));
        // NOGOOD (the sentinel's INFO of the replica is stale) and INPROG (an earlier failover
        // still finishing) pass: try again until the sentinel accepts.
        await waitFor(`SENTINEL FAILOVER ${SENTINEL_NAME} not accepted`, 10_000, procs, async () => {
          const reply = await redisQuery(sentinels[0]!.port, ['SENTINEL', 'FAILOVER', SENTINEL_NAME]);
          if (reply !== 'OK') throw new Error(`SENTINEL FAILOVER answered ${JSON.stringify(reply)}`);
        });
        await waitFor(`failover from ${before} to ${next} not done`, 20_000, procs, async () => {
          const seen = await Promise.all(sentinels.map((s) => sentinelMasterPort(s.port)));
          if (seen.some((p) => p !== next)) throw new Error(`sentinels report masters ${seen.join(', ')}`);
          const role = await roleOf(next);
          if (role !== 'master') throw new Error(`${next} answers ROLE ${role}`);
        });
        if (options.waitForOldMaster === true) {
          await waitFor(`old master ${before} did not become a replica of ${next}`, 30_000, procs, () => linkedReplicaOf(before, next));
        }
        return next;
      },

      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// TLS

/** Paths of the PEM files a TLS test needs. */
export interface TlsFiles {
  /** The CA that signed the server and client certificates. */
  readonly ca: string;
  /** The server certificate (SAN IP:127.0.0.1, DNS:localhost). */
  readonly cert: string;
  /** The server key. */
  readonly key: string;
  /** A client certificate signed by {@link TlsFiles.ca}. */
  readonly clientCert: string;
  /** The client certificate's key. */
  readonly clientKey: string;
  /** An unrelated CA that signed nothing here: trusting only it must fail the handshake. */
  readonly wrongCa: string;
}

/** A running redis-server that speaks TLS only. */
export interface TlsRedis {
  /** The TLS port (there is no plain-text port). */
  readonly port: number;
  /** `rediss://127.0.0.1:PORT`. */
  readonly url: string;
  /** The CA, server, client and wrong-CA files. */
  readonly files: TlsFiles;
  /** Kill the server and remove its temp dir and the certificates (safe to call twice). */
  stop(): Promise<void>;
}

/** Extensions for the generated certificates (and the minimal `req` section openssl wants). */
const OPENSSL_CONFIG = `[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`;

/** Generate the CAs and certificates (P-256 keys: fast) in `dir`. */
async function makeCertificates(dir: string): Promise<TlsFiles> {
  const config = path.join(dir, 'openssl.cnf');
  await writeFile(config, OPENSSL_CONFIG);
  const openssl = (args: string[]) => run('openssl', args, { cwd: dir, timeoutMs: 10_000 });
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = (name: string, cn: string) =>
    openssl(['req', '-x509', '-new', ...newKey, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '7', '-subj', `/CN=${cn}`, '-config', config, '-extensions', 'ca']);
  const leaf = async (name: string, cn: string) => {
    await openssl(['req', '-new', ...newKey, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`, '-config', config]);
    const serial = `0x${Date.now().toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`;
    await openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', serial, '-days', '7', '-out', `${name}.crt`, '-extfile', config, '-extensions', name]);
  };
  await Promise.all([ca('ca', 'roomwire test CA'), ca('wrong-ca', 'roomwire unrelated CA')]);
  await Promise.all([leaf('server', 'localhost'), leaf('client', 'roomwire test client')]);
  const file = (name: string) => path.join(dir, name);
  return {
    ca: file('ca.crt'),
    cert: file('server.crt'),
    key: file('server.key'),
    clientCert: file('client.crt'),
    clientKey: file('client.key'),
    wrongCa: file('wrong-ca.crt'),
  };
}

/**
 * Generate a CA, a server certificate for 127.0.0.1 and localhost, a client certificate and an
 * unrelated second CA with openssl, then start `redis-server --port 0 --tls-port PORT` with them
 * and wait (10 s at most) until it answers PING over TLS. `requireClientCert` (default false)
 * sets `--tls-auth-clients yes`: then a client must present a certificate signed by the CA.
 */
export async function startTlsRedis(options: { requireClientCert?: boolean } = {}): Promise<TlsRedis> {
  const certDir = await makeTempDir('roomwire-tls-');
  try {
    const files = await makeCertificates(certDir);
    const [ca, cert, key] = await Promise.all([readFile(files.ca), readFile(files.clientCert), readFile(files.clientKey)]);
    const tlsPing = async (port: number) => {
      const reply = await sendCommand(tls.connect({ host: '127.0.0.1', port, ca, cert, key }), ['PING'], 2000);
      if (reply !== 'PONG') throw new Error(`PING over TLS answered ${JSON.stringify(reply)}`);
    };
    const proc = await launch(
      'tls redis',
      async (port, dir) => [
        ...dataArgs(0, dir),
        '--tls-port', String(port),
        '--tls-cert-file', files.cert,
        '--tls-key-file', files.key,
        '--tls-ca-cert-file', files.ca,
        '--tls-auth-clients', options.requireClientCert === true ? 'yes' : 'no',
      ],
      tlsPing,
    );
    return {
      port: proc.port,
      url: `rediss://127.0.0.1:${proc.port}`,
      files,
      async stop() {
        await proc.stop();
        await removeTempDir(certDir);
      },
    };
  } catch (err) {
    await removeTempDir(certDir);
    throw err;
  }
}
