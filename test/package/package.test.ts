/**
 * The package as users receive it: `npm pack` the repository, install the tarball into a
 * scratch project (offline, from the npm cache), and load, run and lint what was installed.
 *
 * dist/ is built once by test/global-setup.ts; the pack runs with --ignore-scripts so the
 * `prepack` build does not wipe dist/ under the test files running alongside this one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { protocolJsonSchema } from '../../src/index';

const repo = fileURLToPath(new URL('../..', import.meta.url));

interface PackageJson {
  name: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  devDependencies?: Record<string, string>;
  exports: Record<string, unknown>;
  bin: Record<string, string>;
  main: string;
  module: string;
  types: string;
  typesVersions: Record<string, Record<string, string[]>>;
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/** The environment without what an enclosing `npm test` exports (lifecycle, package and local-prefix variables). */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('npm_') && !k.startsWith('npm_config_')) continue;
    if (k === 'npm_config_local_prefix' || k === 'npm_config_call' || k === 'NODE_OPTIONS') continue;
    env[k] = v;
  }
  return { ...env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false', ...extra };
}

/** What a plain user's shell gives a node process: no npm, vitest or roomwire variables. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? os.tmpdir(), ...extra };
}

const children = new Set<ChildProcess>();

/** Run a command to completion; SIGKILL it after `timeout` ms. Never rejects on a non-zero exit. */
function run(cmd: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeout: number }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env: options.env ?? cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeout);
    child.once('error', (err) => {
      clearTimeout(timer);
      children.delete(child);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, timedOut, stdout, stderr });
    });
  });
}

function show(cmd: string, r: Run): string {
  return `${cmd}: exit ${r.code}${r.signal ? ` (${r.signal})` : ''}${r.timedOut ? ' after timing out' : ''}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

/** The package a bare specifier names: `a/b` -> `a`, `@s/a/b` -> `@s/a`. */
function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/**
 * Every module a declaration file needs that the package's users are not guaranteed to
 * have: bare imports (static, `import()`, `require`, `declare module` augmentations,
 * `/// <reference types>`) naming neither a Node builtin, a dependency, a peer dependency
 * nor the package itself. Comments (JSDoc examples) are not code and are ignored.
 */
function undeclaredTypeImports(files: Record<string, string>, pkg: PackageJson): string[] {
  const allowed = new Set([pkg.name, ...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})]);
  const builtins = new Set(builtinModules);
  const bad: string[] = [];
  for (const [file, text] of Object.entries(files)) {
    const info = ts.preProcessFile(text, true, true);
    const specifiers = [
      ...info.importedFiles.map((f) => f.fileName),
      ...(info.ambientExternalModules ?? []),
      ...info.referencedFiles.map((f) => `./${f.fileName}`),
    ];
    for (const spec of specifiers) {
      if (spec.startsWith('./') || spec.startsWith('../')) continue;
      if (spec.startsWith('node:') || builtins.has(spec)) continue;
      if (spec.startsWith('/') || /^[a-z]+:/i.test(spec) || !allowed.has(packageOf(spec))) bad.push(`${file}: ${spec}`);
    }
    for (const ref of info.typeReferenceDirectives.map((d) => d.fileName)) {
      if (ref === 'node') continue; // Node's own types, as for node: imports
      if (!allowed.has(ref) && !allowed.has(`@types/${ref}`)) bad.push(`${file}: /// <reference types="${ref}" />`);
    }
  }
  return bad;
}

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await listFiles(path.join(dir, entry.name), rel)));
    else out.push(rel);
  }
  return out;
}

/** Every file package.json points at (exports, bin, main/module/types, typesVersions). */
function referencedFiles(pkg: PackageJson): string[] {
  const targets: string[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === 'string') targets.push(v);
    else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x);
  };
  walk(pkg.exports);
  walk(pkg.bin);
  walk(pkg.typesVersions);
  targets.push(pkg.main, pkg.module, pkg.types);
  return [...new Set(targets.map((t) => path.posix.normalize(t)))].sort();
}

/**
 * The body of every scratch-project script: load each subpath with `load` (import() or
 * require), report the type of each export, then serve a hub with roomwire/node on
 * 127.0.0.1:0, connect with ws to /ws/lobby and report the first frame. It closes
 * everything and lets the process end by itself; a 10 s unref'd timer catches a hang.
 */
const SCRIPT_BODY = `
const SUBPATHS = ['roomwire', 'roomwire/node', 'roomwire/express', 'roomwire/koa', 'roomwire/fastify', 'roomwire/server', 'roomwire/client', 'roomwire/redis'];

async function main() {
  setTimeout(() => { console.error('roomwire smoke: still running after 10 s'); process.exit(3); }, 10000).unref();
  const exports = {};
  for (const spec of SUBPATHS) {
    const mod = await load(spec);
    exports[spec] = Object.fromEntries(Object.keys(mod).map((k) => [k, typeof mod[k]]));
    if (spec === 'roomwire/fastify') exports[spec]['default === roomwire'] = mod.default === mod.roomwire;
  }

  const schema = await loadJson('roomwire/protocol.schema.json');
  const protocol = { $schema: schema.$schema, defs: Object.keys(schema.$defs) };

  const { createHub } = await load('roomwire');
  const { attach } = await load('roomwire/node');
  const http = await load('node:http');
  const { WebSocket } = await load('ws');
  const hub = createHub();
  const server = http.createServer((req, res) => res.end('app'));
  attach(hub, server);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  const ws = new WebSocket('ws://127.0.0.1:' + port + '/ws/lobby');
  const closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
  const first = await new Promise((resolve, reject) => {
    ws.once('message', (data) => resolve(JSON.parse(data.toString())));
    ws.once('error', reject);
  });
  await hub.close();
  const closeCode = await closed;
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  console.log(JSON.stringify({ exports, first, closeCode, protocol }));
}

main().catch((err) => { console.error(err); process.exit(1); });
`;

const ESM_LOADER = `const load = (spec) => import(spec);\nconst loadJson = async (spec) => (await import(spec, { with: { type: 'json' } })).default;\n`;
const CJS_LOADER = `const load = async (spec) => require(spec);\nconst loadJson = load;\n`;

/** Script files, per directory: the directory's package.json "type", the file, its module system. */
const SCRIPTS = [
  { type: 'module', file: 'check.mjs', system: 'esm' },
  { type: 'module', file: 'check.cjs', system: 'cjs' },
  { type: 'module', file: 'check.js', system: 'esm' },
  { type: 'commonjs', file: 'check.mjs', system: 'esm' },
  { type: 'commonjs', file: 'check.cjs', system: 'cjs' },
  { type: 'commonjs', file: 'check.js', system: 'cjs' },
] as const;

/**
 * Every runtime export of every subpath, exactly: a new export is a decision (documented,
 * in the API reference), never a leak of an internal helper.
 */
const EXPECTED_EXPORTS: Record<string, string[]> = {
  roomwire: [
    'ASYMMETRIC_ALGORITHMS', 'CLIENT_MESSAGE_TYPES', 'CONFIG_FIELDS', 'ClientMessageSchemas', 'DURATION_BUCKETS', 'HMAC_ALGORITHMS', 'Outbound',
    'REJECT_REASONS', 'ROOM_NAME_PATTERN', 'RequestIdSchema', 'RoomNameSchema', 'RoomwireError', 'ServerFrameSchemas', 'SinceSchema', 'TOKEN_PROBLEMS', 'WIRE_ERRORS',
    'adapterHandle', 'checkFrame', 'configFromEnv', 'createHub', 'createJwtVerifier', 'createMemoryBroker', 'defaultAuthenticate', 'extractToken',
    'formatRate', 'frameJsonSchemas', 'identityFromClaims', 'isValidRoomName', 'parseDuration', 'parseRate', 'protocolJsonSchema', 'systemClock',
    'unknownVariables',
  ],
  'roomwire/node': ['attach', 'createUpgradeHandler', 'limitUnfinishedRequests'],
  'roomwire/express': ['attach'],
  'roomwire/koa': ['attach'],
  'roomwire/fastify': ['default', 'roomwire'],
  'roomwire/server': ['LOG_LEVELS', 'SERVER_FIELDS', 'chatPage', 'clientScript', 'createJsonLogger', 'serverConfigFromEnv', 'startServer', 'statsPage'],
  'roomwire/client': ['Room', 'RoomwireClient', 'RoomwireError', 'createClient'],
  'roomwire/redis': ['REDIS_FIELDS', 'createRedisBroker', 'redisBrokerFromEnv', 'redisSettingsFromEnv'],
};

let tmp: string;
let scratch: string;
let tarball: string;
let packedFiles: string[];
let pkg: PackageJson;

beforeAll(async () => {
  pkg = JSON.parse(await readFile(path.join(repo, 'package.json'), 'utf8')) as PackageJson;
  tmp = await mkdtemp(path.join(os.tmpdir(), 'roomwire-package-'));
  const packDir = path.join(tmp, 'pack');
  scratch = path.join(tmp, 'scratch');
  await mkdir(packDir);
  await mkdir(scratch);

  // Another vitest run in this checkout rebuilds dist/ in its global setup (tsup cleans it
  // first and writes the .d.ts last). Give such a build up to 30 s to finish before
  // packing; a file that never appears is left to the assertions below.
  const expected = referencedFiles(pkg).map((f) => path.join(repo, f));
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 250))) {
    const present = await Promise.all(expected.map((f) => access(f).then(() => true, () => false)));
    if (present.every(Boolean)) break;
  }

  const pack = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', packDir], { cwd: repo, timeout: 30_000 });
  expect(pack.code, show('npm pack', pack)).toBe(0);
  const [info] = JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[];
  tarball = path.join(packDir, info!.filename);
  packedFiles = info!.files.map((f) => f.path).sort();

  // The scratch project: the tarball, the optional peers (in the ranges the repository
  // is tested with) and ws for the client, all from the npm cache.
  await writeFile(path.join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', version: '1.0.0', private: true }, null, 2));
  const dev = pkg.devDependencies ?? {};
  const specs = [
    tarball,
    `express@${dev.express ?? pkg.peerDependencies!.express}`,
    `fastify@${dev.fastify ?? pkg.peerDependencies!.fastify}`,
    `koa@${dev.koa ?? pkg.peerDependencies!.koa}`,
    `ws@${pkg.dependencies!.ws}`,
  ];
  const flags = ['--no-audit', '--no-fund', '--no-package-lock', '--loglevel=error'];
  let install = await run('npm', ['install', ...specs, '--offline', ...flags], { cwd: scratch, timeout: 60_000 });
  if (install.code !== 0) {
    console.warn(`offline install failed, retrying with --prefer-offline\n${show('npm install --offline', install)}`);
    install = await run('npm', ['install', ...specs, '--prefer-offline', ...flags], { cwd: scratch, timeout: 60_000 });
  }
  expect(install.code, show('npm install', install)).toBe(0);

  for (const type of ['module', 'commonjs']) {
    const dir = path.join(scratch, `type-${type}`);
    await mkdir(dir);
    await writeFile(path.join(dir, 'package.json'), JSON.stringify({ type }));
  }
  for (const s of SCRIPTS) {
    const loader = s.system === 'esm' ? ESM_LOADER : CJS_LOADER;
    await writeFile(path.join(scratch, `type-${s.type}`, s.file), loader + SCRIPT_BODY);
  }
}, 120_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('the packed tarball', () => {
  it('holds dist, the docs, the examples, README.md, CHANGELOG.md, LICENSE and package.json, and nothing else', () => {
    for (const f of ['package.json', 'README.md', 'CHANGELOG.md', 'ARCHITECTURE.md', 'LICENSE', 'docs/troubleshooting.md', 'docs/asyncapi.yaml', 'examples/README.md']) expect(packedFiles).toContain(f);
    expect(packedFiles.filter((f) => f.startsWith('dist/')).length).toBeGreaterThan(0);
    const stray = packedFiles.filter((f) => /^(test|src|node_modules|bench)\//.test(f) || f.includes('/node_modules/'));
    expect(stray).toEqual([]);
    const other = packedFiles.filter(
      (f) => !f.startsWith('dist/') && !/^docs\/[^/]+\.(md|yaml|json)$/.test(f) && !/^examples\/[^/]+\.(mjs|md)$/.test(f) && !['package.json', 'README.md', 'CHANGELOG.md', 'ARCHITECTURE.md', 'LICENSE'].includes(f),
    );
    expect(other).toEqual([]);
  });

  it('has a README whose relative links all resolve inside the package, and repository, homepage and bugs for the npm page', async () => {
    const readme = await readFile(path.join(repo, 'README.md'), 'utf8');
    const targets = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((t) => !/^[a-z]+:/i.test(t) && !t.startsWith('#'));
    expect(targets.length).toBeGreaterThan(5);
    const dead = targets.filter((t) => !packedFiles.includes(t.split('#')[0]!.replace(/^\.\//, '')));
    expect(dead).toEqual([]);
    const meta = pkg as unknown as { repository?: { url?: string }; homepage?: string; bugs?: { url?: string } };
    expect(meta.repository?.url).toMatch(/^git\+https:\/\//);
    expect(meta.homepage).toMatch(/^https:\/\//);
    expect(meta.bugs?.url).toMatch(/^https:\/\//);
  });

  it("loads no Redis code from 'roomwire': its entry's chunks, followed through every relative import, hold none", async () => {
    const dist = path.join(scratch, 'node_modules/roomwire/dist');
    const reached = async (entry: string): Promise<Map<string, string>> => {
      const seen = new Map<string, string>();
      const visit = async (file: string): Promise<void> => {
        if (seen.has(file)) return;
        const code = await readFile(path.join(dist, file), 'utf8');
        seen.set(file, code);
        for (const m of code.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\(\s*)["'](\.\/[^"']+)["']/g)) await visit(path.posix.join(path.posix.dirname(file), m[1]!));
      };
      await visit(entry);
      return seen;
    };
    for (const entry of ['index.js', 'index.cjs']) {
      const files = await reached(entry);
      expect(files.size, entry).toBeGreaterThan(1);
      const redis = [...files].filter(([, code]) => /SUBSCRIBE|createRedisBroker|parseRedisUrl/.test(code)).map(([f]) => f);
      expect(redis, entry).toEqual([]);
    }
    // The check finds Redis code where there is some.
    const fromRedis = await reached('redis.js');
    expect([...fromRedis.values()].some((code) => /SUBSCRIBE/.test(code))).toBe(true);
  });

  it('holds every file package.json points at (exports, bin, main, module, types, typesVersions)', () => {
    const missing = referencedFiles(pkg).filter((f) => !packedFiles.includes(f));
    expect(missing).toEqual([]);
  });

  it('passes publint --strict with no problems', async () => {
    const r = await run(path.join(repo, 'node_modules/.bin/publint'), ['--strict', tarball], { cwd: repo, timeout: 30_000 });
    expect(r.code, show('publint --strict', r)).toBe(0);
    expect(r.stdout, show('publint --strict', r)).toContain('All good!');
    expect(`${r.stdout}\n${r.stderr}`).not.toMatch(/^(Errors|Warnings|Suggestions):/m);
  });

  it('passes attw: types included, every entry point resolved, no problems', async () => {
    const r = await run(path.join(repo, 'node_modules/.bin/attw'), ['--format', 'json', tarball], { cwd: repo, timeout: 30_000 });
    expect(r.code, show('attw', r)).toBe(0);
    const { analysis, problems } = JSON.parse(r.stdout) as {
      analysis: {
        types: false | { kind: string };
        entrypoints: Record<string, { resolutions: Record<string, { resolution?: { fileName: string } }> }>;
      };
      problems: unknown[] | Record<string, unknown>;
    };
    expect(analysis.types, 'attw found no types in the package').toEqual({ kind: 'included' });
    expect(Array.isArray(problems) ? problems : Object.values(problems)).toEqual([]);
    const json = ['./package.json', './protocol.schema.json'];
    const subpaths = Object.keys(pkg.exports).filter((k) => !json.includes(k));
    expect(Object.keys(analysis.entrypoints).sort()).toEqual([...subpaths, ...json].sort());
    for (const sub of subpaths) {
      for (const [kind, res] of Object.entries(analysis.entrypoints[sub]!.resolutions)) {
        expect(res.resolution?.fileName, `${sub} under ${kind}`).toMatch(/\.d\.c?ts$/);
      }
    }
    // The JSON Schema resolves as the JSON file itself, under every resolution mode.
    for (const [kind, res] of Object.entries(analysis.entrypoints['./protocol.schema.json']!.resolutions)) {
      expect(res.resolution?.fileName, `protocol.schema.json under ${kind}`).toBe('/node_modules/roomwire/dist/protocol.schema.json');
    }
  });
});

describe('the declaration files as installed', () => {
  it('import only node builtins, dependencies and peer dependencies', async () => {
    const dist = path.join(scratch, 'node_modules/roomwire/dist');
    const names = (await listFiles(dist)).filter((f) => /\.d\.[cm]?ts$/.test(f));
    expect(names.length).toBeGreaterThan(0);
    const files: Record<string, string> = {};
    for (const f of names) files[`dist/${f}`] = await readFile(path.join(dist, f), 'utf8');
    expect(undeclaredTypeImports(files, pkg)).toEqual([]);
  });

  it('declare as peer dependencies only packages the built code imports', async () => {
    const dist = path.join(scratch, 'node_modules/roomwire/dist');
    let code = '';
    for (const f of await listFiles(dist)) if (/\.(c?js|d\.c?ts)$/.test(f)) code += await readFile(path.join(dist, f), 'utf8');
    // `require2(` too: esbuild renames a local `require` (roomwire/redis loads `redis` lazily).
    const imported = (name: string) => new RegExp(`(?:from|import\\(|require\\d*\\()\\s*['"]${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}['"]`).test(code);
    const peers = Object.keys(pkg.peerDependencies ?? {});
    expect(peers.filter((name) => !imported(name))).toEqual([]);
    expect(Object.keys(pkg.peerDependenciesMeta ?? {}).sort()).toEqual([...peers].sort());
  });

  it('(the check itself) flags devDependency-only and unknown packages, not peers, relatives or comments', () => {
    const devOnly: PackageJson = { ...pkg, peerDependencies: {} };
    const withPeers: PackageJson = { ...pkg, peerDependencies: { ...pkg.peerDependencies, express: '*', koa: '*' } };
    const text = [
      `/// <reference types="koa" />`,
      `/** import { nope } from 'in-a-comment'; */`,
      `import { A } from './chunk-x.js';`,
      `import type { Server } from 'node:http';`,
      `import 'zod';`,
      `import { Mock } from 'vitest';`,
      `export type T = import('@types/ws').WebSocket;`,
      `export { X } from 'express/lib/router';`,
      `declare module 'fastify' { interface FastifyInstance { x: 1 } }`,
    ].join('\n');
    expect(undeclaredTypeImports({ 'x.d.ts': text }, withPeers)).toEqual(['x.d.ts: vitest', 'x.d.ts: @types/ws']);
    expect(undeclaredTypeImports({ 'x.d.ts': text }, devOnly)).toEqual([
      'x.d.ts: vitest',
      'x.d.ts: @types/ws',
      'x.d.ts: express/lib/router',
      'x.d.ts: fastify',
      'x.d.ts: /// <reference types="koa" />',
    ]);
  });
});

describe('the installed package in a scratch project', () => {
  it.each(SCRIPTS)('loads every subpath and serves a hub: $file ($system) under "type": "$type"', async (s) => {
    const cwd = path.join(scratch, `type-${s.type}`);
    const r = await run(process.execPath, [s.file], { cwd, env: userEnv(), timeout: 15_000 });
    expect(r.code, show(`node ${s.file}`, r)).toBe(0);
    const report = JSON.parse(r.stdout) as { exports: Record<string, Record<string, unknown>>; first: unknown; closeCode: number; protocol: unknown };
    expect(Object.keys(report.exports).sort()).toEqual(Object.keys(EXPECTED_EXPORTS).sort());
    for (const [spec, expected] of Object.entries(EXPECTED_EXPORTS)) {
      const names = Object.keys(report.exports[spec]!).filter((k) => k !== 'default === roomwire' && !(s.type === 'commonjs' && k === '__esModule'));
      expect(names.sort(), spec).toEqual([...expected].sort());
    }
    expect(report.exports['roomwire/fastify']!['default === roomwire']).toBe(true);
    expect(report.first).toEqual({ type: 'join', room: 'lobby', user_id: expect.any(String), username: expect.any(String), timestamp: expect.any(Number) });
    expect(report.closeCode).toBe(1001);
    // roomwire/protocol.schema.json: the JSON Schema, one $defs entry per frame.
    expect(report.protocol).toEqual({ $schema: 'https://json-schema.org/draft/2020-12/schema', defs: Object.keys(protocolJsonSchema().$defs as object) });
  });

  it('runs the installed bin: listens on PORT=0 HOST=127.0.0.1, serves /healthz, exits 0 on SIGTERM', async () => {
    const bin = path.join(scratch, 'node_modules/.bin/roomwire');
    const child = spawn(bin, [], { cwd: scratch, env: userEnv({ PORT: '0', HOST: '127.0.0.1' }), stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (error) => resolve({ code: null, signal: null, error }));
    });
    const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
      Promise.race([
        p,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} within ${ms} ms\nstdout: ${stdout}\nstderr: ${stderr}`)), ms)),
      ]);
    try {
      const url = await within(
        new Promise<string>((resolve, reject) => {
          const check = () => {
            const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout);
            if (m) resolve(m[1]!);
          };
          child.stdout.on('data', check);
          void exited.then(({ code, signal, error }) =>
            reject(new Error(`${error ? `could not start: ${error.message}` : `exited (${code ?? signal}) before listening`}\nstderr: ${stderr}`)),
          );
        }),
        10_000,
        'no "listening on http://127.0.0.1:" line',
      );
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5_000) });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ status: 'ok' });
      child.kill('SIGTERM');
      const { code, signal } = await within(exited, 10_000, 'no exit after SIGTERM');
      expect({ code, signal }, `stdout: ${stdout}\nstderr: ${stderr}`).toEqual({ code: 0, signal: null });
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      children.delete(child);
    }
  });
});
