import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CONFIG_FIELDS, configFromEnv, createHub, parseDuration, parseRate, type RoomwireError } from '../../src/index';

function issues(env: Record<string, string>): Record<string, string> {
  try {
    configFromEnv(env);
  } catch (e) {
    const err = e as RoomwireError;
    expect(err.code).toBe('ERR_INVALID_CONFIG');
    return Object.fromEntries(err.issues.map((i) => [i.name, i.message]));
  }
  throw new Error('configuration was accepted');
}

describe('configFromEnv', () => {
  it('has the seed defaults and the contract additions', () => {
    expect(configFromEnv({})).toEqual({
      enabled: true,
      path: '/ws',
      maxConnections: 1000,
      readBufferSize: 1024,
      writeBufferSize: 1024,
      maxBuffered: 8 * 1024 * 1024,
      maxMessageSize: 512,
      writeWait: 10_000,
      pongWait: 60_000,
      pingPeriod: 54_000,
      heartbeatInterval: 30_000,
      connectionTimeout: 60_000,
      allowedOrigins: ['*'],
      requireAuth: false,
      maxConnectionsPerUser: 0,
      maxConnectionsPerAddress: 0,
      maxRoomSize: 0,
      maxRoomsPerConnection: 100,
      messageRate: { count: 20, per: 's', burst: 40 },
      connectRate: { count: 60, per: 'm', burst: 30 },
      trustProxy: 0,
      historySize: 0,
      historyTtl: 300_000,
      drainWindow: 0,
      jwt: {
        secret: undefined,
        publicKey: undefined,
        jwksUrl: undefined,
        issuer: [],
        audience: [],
        algorithms: [],
        clockTolerance: 5,
      },
      redisUrl: undefined,
    });
  });

  it('reads every variable', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const cfg = configFromEnv({
      WEBSOCKET_ENABLED: 'false',
      WEBSOCKET_PATH: '/live/',
      WEBSOCKET_MAX_CONNECTIONS: '5',
      WEBSOCKET_READ_BUFFER_SIZE: '2048',
      WEBSOCKET_WRITE_BUFFER_SIZE: '4096',
      WEBSOCKET_MAX_BUFFERED: '1048576',
      WEBSOCKET_MAX_MESSAGE_SIZE: '65536',
      WEBSOCKET_WRITE_WAIT: '1m30s',
      WEBSOCKET_PONG_WAIT: '10s',
      WEBSOCKET_PING_PERIOD: '9500ms',
      WEBSOCKET_HEARTBEAT_INTERVAL: '1.5s',
      WEBSOCKET_CONNECTION_TIMEOUT: '1h',
      WEBSOCKET_ALLOWED_ORIGINS: 'https://a.example, https://*.Example.org:443 ,http://localhost:3000',
      WEBSOCKET_REQUIRE_AUTH: 'true',
      WEBSOCKET_MAX_CONNECTIONS_PER_USER: '4',
      WEBSOCKET_MAX_CONNECTIONS_PER_ADDRESS: '50',
      WEBSOCKET_MAX_ROOM_SIZE: '10',
      WEBSOCKET_MAX_ROOMS_PER_CONNECTION: '3',
      WEBSOCKET_MESSAGE_RATE: '5/m',
      WEBSOCKET_CONNECT_RATE: '100/h,7',
      WEBSOCKET_TRUST_PROXY: 'true',
      WEBSOCKET_HISTORY_SIZE: '100',
      WEBSOCKET_HISTORY_TTL: '1m30s',
      WEBSOCKET_DRAIN_WINDOW: '4s',
      WEBSOCKET_JWT_SECRET: 'secret',
      WEBSOCKET_JWT_PUBLIC_KEY: pem.replace(/\n/g, '\\n'),
      WEBSOCKET_JWKS_URL: 'https://id.example/jwks.json',
      WEBSOCKET_JWT_ISSUER: 'https://id.example',
      WEBSOCKET_JWT_AUDIENCE: 'a,b',
      WEBSOCKET_JWT_ALGORITHMS: 'HS512,ES256',
      WEBSOCKET_JWT_CLOCK_TOLERANCE: '30s',
    });
    expect(cfg).toEqual({
      enabled: false,
      path: '/live',
      maxConnections: 5,
      readBufferSize: 2048,
      writeBufferSize: 4096,
      maxBuffered: 1_048_576,
      maxMessageSize: 65536,
      writeWait: 90_000,
      pongWait: 10_000,
      pingPeriod: 9_500,
      heartbeatInterval: 1_500,
      connectionTimeout: 3_600_000,
      allowedOrigins: ['https://a.example', 'https://*.example.org', 'http://localhost:3000'],
      requireAuth: true,
      maxConnectionsPerUser: 4,
      maxConnectionsPerAddress: 50,
      maxRoomSize: 10,
      maxRoomsPerConnection: 3,
      messageRate: { count: 5, per: 'm', burst: 5 },
      connectRate: { count: 100, per: 'h', burst: 7 },
      trustProxy: 1,
      historySize: 100,
      historyTtl: 90_000,
      drainWindow: 4_000,
      jwt: {
        secret: 'secret',
        publicKey: pem,
        jwksUrl: 'https://id.example/jwks.json',
        issuer: ['https://id.example'],
        audience: ['a', 'b'],
        algorithms: ['HS512', 'ES256'],
        clockTolerance: 30,
      },
    });
  });

  it('has one variable per field, all distinct', () => {
    const envs = CONFIG_FIELDS.map((f) => f.env);
    expect(new Set(envs).size).toBe(envs.length);
    expect(envs).toHaveLength(30 + envs.filter((e) => e === 'WEBSOCKET_DRAIN_WINDOW').length);
    expect(envs.filter((e) => e.startsWith('WEBSOCKET_REDIS_'))).toEqual([]);
  });

  it('names every bad variable at once', () => {
    const found = issues({
      WEBSOCKET_ENABLED: 'yes',
      WEBSOCKET_PATH: 'ws',
      WEBSOCKET_MAX_CONNECTIONS: '-1',
      WEBSOCKET_READ_BUFFER_SIZE: '1.5',
      WEBSOCKET_WRITE_BUFFER_SIZE: 'big',
      WEBSOCKET_MAX_MESSAGE_SIZE: '0',
      WEBSOCKET_WRITE_WAIT: '10',
      WEBSOCKET_PONG_WAIT: '-5s',
      WEBSOCKET_HEARTBEAT_INTERVAL: '0',
      WEBSOCKET_CONNECTION_TIMEOUT: '10 s',
      WEBSOCKET_ALLOWED_ORIGINS: 'https://ok.example,ftp//bad',
      WEBSOCKET_REQUIRE_AUTH: '1',
      WEBSOCKET_MAX_ROOM_SIZE: '-1',
      WEBSOCKET_MAX_CONNECTIONS_PER_USER: 'x',
      WEBSOCKET_MAX_CONNECTIONS_PER_ADDRESS: '-2',
      WEBSOCKET_MAX_ROOMS_PER_CONNECTION: '0',
      WEBSOCKET_MESSAGE_RATE: '0/s',
      WEBSOCKET_CONNECT_RATE: '10/d',
      WEBSOCKET_TRUST_PROXY: 'maybe',
      WEBSOCKET_HISTORY_SIZE: '-1',
      WEBSOCKET_HISTORY_TTL: '0s',
      WEBSOCKET_DRAIN_WINDOW: '30',
      WEBSOCKET_JWT_PUBLIC_KEY: 'not a pem',
      WEBSOCKET_JWKS_URL: 'ftp://x',
      WEBSOCKET_JWT_ALGORITHMS: 'HS256,none',
      WEBSOCKET_JWT_CLOCK_TOLERANCE: 'soon',
    });
    expect(Object.keys(found).sort()).toEqual(
      [
        'WEBSOCKET_ENABLED',
        'WEBSOCKET_PATH',
        'WEBSOCKET_MAX_CONNECTIONS',
        'WEBSOCKET_READ_BUFFER_SIZE',
        'WEBSOCKET_WRITE_BUFFER_SIZE',
        'WEBSOCKET_MAX_MESSAGE_SIZE',
        'WEBSOCKET_WRITE_WAIT',
        'WEBSOCKET_PONG_WAIT',
        'WEBSOCKET_HEARTBEAT_INTERVAL',
        'WEBSOCKET_CONNECTION_TIMEOUT',
        'WEBSOCKET_ALLOWED_ORIGINS',
        'WEBSOCKET_REQUIRE_AUTH',
        'WEBSOCKET_MAX_ROOM_SIZE',
        'WEBSOCKET_MAX_CONNECTIONS_PER_USER',
        'WEBSOCKET_MAX_CONNECTIONS_PER_ADDRESS',
        'WEBSOCKET_MAX_ROOMS_PER_CONNECTION',
        'WEBSOCKET_MESSAGE_RATE',
        'WEBSOCKET_CONNECT_RATE',
        'WEBSOCKET_TRUST_PROXY',
        'WEBSOCKET_HISTORY_SIZE',
        'WEBSOCKET_HISTORY_TTL',
        'WEBSOCKET_DRAIN_WINDOW',
        'WEBSOCKET_JWT_PUBLIC_KEY',
        'WEBSOCKET_JWKS_URL',
        'WEBSOCKET_JWT_ALGORITHMS',
        'WEBSOCKET_JWT_CLOCK_TOLERANCE',
      ].sort(),
    );
    expect(found.WEBSOCKET_ALLOWED_ORIGINS).toContain('ftp//bad');
    expect(found.WEBSOCKET_JWT_ALGORITHMS).toContain('none');
    expect(found.WEBSOCKET_HISTORY_SIZE).toBe('must be an integer of at least 0, not "-1"');
    expect(found.WEBSOCKET_HISTORY_TTL).toBe('must be longer than 0');
    expect(found.WEBSOCKET_DRAIN_WINDOW).toBe('"30" is not a duration such as 500ms, 10s or 1m30s');
  });

  it('requires PING_PERIOD below PONG_WAIT', () => {
    expect(issues({ WEBSOCKET_PING_PERIOD: '60s' })).toEqual({
      WEBSOCKET_PING_PERIOD: 'must be below WEBSOCKET_PONG_WAIT (60000ms is not below 60000ms)',
    });
    expect(configFromEnv({ WEBSOCKET_PING_PERIOD: '59s' }).pingPeriod).toBe(59_000);
  });

  it('refuses algorithms without the key they need', () => {
    expect(Object.keys(issues({ WEBSOCKET_JWT_ALGORITHMS: 'RS256' }))).toEqual(['WEBSOCKET_JWT_ALGORITHMS']);
    expect(Object.keys(issues({ WEBSOCKET_JWT_ALGORITHMS: 'HS256', WEBSOCKET_JWKS_URL: 'https://x/jwks' }))).toEqual([
      'WEBSOCKET_JWT_ALGORITHMS',
    ]);
  });

  it('defaults the algorithms to the configured keys', () => {
    expect(configFromEnv({ WEBSOCKET_JWT_SECRET: 's' }).jwt.algorithms).toEqual(['HS256', 'HS384', 'HS512']);
    expect(configFromEnv({ WEBSOCKET_JWKS_URL: 'https://x/jwks' }).jwt.algorithms).toEqual([
      'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA',
    ]);
  });

  it('treats empty variables as unset', () => {
    expect(configFromEnv({ WEBSOCKET_PATH: '', WEBSOCKET_JWT_SECRET: '' })).toMatchObject({ path: '/ws', jwt: { secret: undefined } });
  });

  it('round-trips: createHub accepts what configFromEnv returns', async () => {
    const hub = createHub(configFromEnv({ WEBSOCKET_JWT_SECRET: 's', WEBSOCKET_ALLOWED_ORIGINS: 'https://*.a.example' }));
    expect(hub.config.jwt.algorithms).toEqual(['HS256', 'HS384', 'HS512']);
    expect(hub.config.allowedOrigins).toEqual(['https://*.a.example']);
    await hub.close();
  });

  it('validates createHub options by option name', () => {
    expect(() => createHub({ pingPeriod: '2m', maxConnections: 0 })).toThrow(
      expect.objectContaining({
        code: 'ERR_INVALID_CONFIG',
        issues: [
          { name: 'maxConnections', message: 'must be an integer of at least 1, not "0"' },
          { name: 'pingPeriod', message: 'must be below pongWait (120000ms is not below 60000ms)' },
        ],
      }),
    );
  });

  it('accepts requireAuth with no key to verify tokens, and says so: every upgrade then gets 401 (contract section 1)', async () => {
    const warnings: unknown[][] = [];
    const logger = { debug() {}, info() {}, warn: (...args: unknown[]) => void warnings.push(args), error() {} };
    const hub = createHub({ requireAuth: true, logger });
    const custom = createHub({ requireAuth: true, authenticate: () => null, logger });
    try {
      expect(warnings).toEqual([[{ variable: 'WEBSOCKET_REQUIRE_AUTH' }, expect.stringContaining('every WebSocket upgrade is refused with 401')]]);
      expect(custom.config.requireAuth).toBe(true);
    } finally {
      await Promise.all([hub.close(), custom.close()]);
    }
  });
});

describe('serverConfigFromEnv', () => {
  it('names HOST/PORT problems together with the others', async () => {
    const { serverConfigFromEnv } = await import('../../src/server/standalone');
    let names: string[] = [];
    try {
      serverConfigFromEnv({ PORT: 'http', WEBSOCKET_REQUIRE_AUTH: 'true', WEBSOCKET_MAX_ROOM_SIZE: 'x' });
    } catch (e) {
      names = (e as RoomwireError).issues.map((i) => i.name);
    }
    expect(names).toEqual(['WEBSOCKET_MAX_ROOM_SIZE', 'PORT']);
    expect(serverConfigFromEnv({ WEBSOCKET_REDIS_URL: 'redis://:pw@127.0.0.1:6390/2' }).redis).toMatchObject({ url: 'redis://:pw@127.0.0.1:6390/2', urls: ['redis://:pw@127.0.0.1:6390/2'], mode: 'single', prefix: 'roomwire' });
    expect(() => serverConfigFromEnv({ WEBSOCKET_REDIS_URL: 'redis://:hunter2@127.0.0.1:6379/x', PORT: 'http' })).toThrow(
      'invalid configuration:\n  WEBSOCKET_REDIS_URL: "redis://:***@127.0.0.1:6379/x": the path must be a database number\n  PORT: must be an integer from 0 to 65535, not "http"',
    );
    expect(serverConfigFromEnv({ PORT: '0', HOST: '::1' })).toMatchObject({ host: '::1', port: 0 });
    expect(serverConfigFromEnv({})).toMatchObject({ host: '0.0.0.0', port: 8080 });
  });
});

describe('parsers', () => {
  it.each([
    ['500ms', 500],
    ['10s', 10_000],
    ['1m30s', 90_000],
    ['1h', 3_600_000],
    ['1.5s', 1_500],
    ['0', 0],
  ])('parseDuration(%s) = %d', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['10', '', 's', '10x', '1m 30s', '-1s', 'abc'])('parseDuration refuses %j', (text) => {
    expect(() => parseDuration(text)).toThrow();
  });

  it('parses rates with and without burst', () => {
    expect(parseRate('20/s,40')).toEqual({ count: 20, per: 's', burst: 40 });
    expect(parseRate('60/m')).toEqual({ count: 60, per: 'm', burst: 60 });
    for (const bad of ['20', '20/s,', '/s', '20/d', '0/s', '20/s,0', '1.5/s']) expect(() => parseRate(bad)).toThrow();
  });
});

describe('unknown WEBSOCKET_* variables', () => {
  it('are warned about with the closest known name, once each by default', async () => {
    const { unknownVariables } = await import('../../src/index');
    expect(
      unknownVariables({ WEBSOCKET_MAX_MESAGE_SIZE: '1', WEBSOCKET_JWT_SECRT: 's', WEBSOCKET_COMPLETELY_ELSE: 'x', WEBSOCKET_PATH: '/ws', PATH: '/bin' }),
    ).toEqual([
      { name: 'WEBSOCKET_MAX_MESAGE_SIZE', suggestion: 'WEBSOCKET_MAX_MESSAGE_SIZE' },
      { name: 'WEBSOCKET_JWT_SECRT', suggestion: 'WEBSOCKET_JWT_SECRET' },
      { name: 'WEBSOCKET_COMPLETELY_ELSE', suggestion: undefined },
    ]);
    const warned: string[] = [];
    configFromEnv({ WEBSOCKET_MAX_MESAGE_SIZE: '1024' }, { warn: (m) => warned.push(m) });
    expect(warned).toEqual(['WEBSOCKET_MAX_MESAGE_SIZE is not a roomwire variable and is ignored; did you mean WEBSOCKET_MAX_MESSAGE_SIZE?']);
  });

  it('are named by the standalone server: a warning line, or beside the startup error they may explain', async () => {
    const { serverConfigFromEnv } = await import('../../src/server/standalone');
    expect(serverConfigFromEnv({ WEBSOCKET_MAX_MESAGE_SIZE: '1024' }).warnings).toEqual([
      'WEBSOCKET_MAX_MESAGE_SIZE is not a roomwire variable and is ignored; did you mean WEBSOCKET_MAX_MESSAGE_SIZE?',
    ]);
    expect(() => serverConfigFromEnv({ WEBSOCKET_JWT_ALGORITHMS: 'HS256', WEBSOCKET_JWT_SECRT: 's' })).toThrow(
      'invalid configuration:\n  WEBSOCKET_JWT_ALGORITHMS: HS256 need WEBSOCKET_JWT_SECRET\n  WEBSOCKET_JWT_SECRT: is not a roomwire variable and is ignored; did you mean WEBSOCKET_JWT_SECRET?',
    );
    // Requiring a token with no key to verify one is no startup error (every upgrade then
    // gets 401, as the contract says; createHub warns), but the likely typo is named.
    expect(serverConfigFromEnv({ WEBSOCKET_REQUIRE_AUTH: 'true', WEBSOCKET_JWT_SECRT: 's' }).warnings).toEqual([
      'WEBSOCKET_JWT_SECRT is not a roomwire variable and is ignored; did you mean WEBSOCKET_JWT_SECRET?',
    ]);
  });
});

describe('the Redis variables (roomwire/redis)', () => {
  it('are not read by configFromEnv, which says where they belong', () => {
    const warned: string[] = [];
    const cfg = configFromEnv({ WEBSOCKET_REDIS_URL: 'redis://127.0.0.1:6379' }, { warn: (m) => warned.push(m) });
    expect(Object.keys(cfg)).not.toContain('redisUrl');
    expect(warned).toEqual([
      'WEBSOCKET_REDIS_URL is read by redisBrokerFromEnv() from roomwire/redis, not by configFromEnv(): pass createHub({ ...configFromEnv(), broker: redisBrokerFromEnv() }) to use it',
    ]);
  });

  it('are checked by their own table, naming every bad one and masking passwords', async () => {
    const { redisSettingsFromEnv, REDIS_FIELDS } = await import('../../src/redis/index');
    expect(REDIS_FIELDS.map((f) => f.env)).toEqual([
      'WEBSOCKET_REDIS_URL',
      'WEBSOCKET_REDIS_MODE',
      'WEBSOCKET_REDIS_SENTINEL_NAME',
      'WEBSOCKET_REDIS_TLS_CA',
      'WEBSOCKET_REDIS_TLS_CERT',
      'WEBSOCKET_REDIS_TLS_KEY',
      'WEBSOCKET_REDIS_CLIENT',
      'WEBSOCKET_REDIS_PREFIX',
    ]);
    const none = { sentinelName: undefined, tlsCa: undefined, tlsCert: undefined, tlsKey: undefined };
    expect(redisSettingsFromEnv({})).toEqual({ url: undefined, urls: [], mode: 'single', client: 'redis', prefix: 'roomwire', ...none });
    expect(redisSettingsFromEnv({ WEBSOCKET_REDIS_URL: 'rediss://h:6380', WEBSOCKET_REDIS_PREFIX: 'chat:eu', WEBSOCKET_REDIS_CLIENT: 'ioredis' })).toEqual({
      url: 'rediss://h:6380',
      urls: ['rediss://h:6380'],
      mode: 'single',
      client: 'ioredis',
      prefix: 'chat:eu',
      ...none,
    });
    expect(redisSettingsFromEnv({ WEBSOCKET_REDIS_URL: 'redis://a:7000, redis://b:7001', WEBSOCKET_REDIS_MODE: 'Cluster' })).toMatchObject({ urls: ['redis://a:7000', 'redis://b:7001'], mode: 'cluster' });
    expect(redisSettingsFromEnv({ WEBSOCKET_REDIS_URL: 'redis://s1:26379,redis://s2:26379', WEBSOCKET_REDIS_MODE: 'sentinel', WEBSOCKET_REDIS_SENTINEL_NAME: 'mymaster' })).toMatchObject({ mode: 'sentinel', sentinelName: 'mymaster' });
    expect(() => redisSettingsFromEnv({ WEBSOCKET_REDIS_URL: 'http://u:secret@redis', WEBSOCKET_REDIS_PREFIX: 'a b' })).toThrow(
      expect.objectContaining({
        code: 'ERR_INVALID_CONFIG',
        issues: [
          { name: 'WEBSOCKET_REDIS_URL', message: '"http://u:***@redis" must be a redis:// or rediss:// URL' },
          { name: 'WEBSOCKET_REDIS_PREFIX', message: 'must be 1 to 64 letters, digits or . _ : -, not "a b"' },
        ],
      }),
    );
    const warned: string[] = [];
    redisSettingsFromEnv({ WEBSOCKET_REDIS_ULR: 'redis://h' }, { warn: (m) => warned.push(m) });
    expect(warned).toEqual(['WEBSOCKET_REDIS_ULR is not a roomwire variable and is ignored; the Redis variables are WEBSOCKET_REDIS_URL, WEBSOCKET_REDIS_MODE, WEBSOCKET_REDIS_SENTINEL_NAME, WEBSOCKET_REDIS_TLS_CA, WEBSOCKET_REDIS_TLS_CERT, WEBSOCKET_REDIS_TLS_KEY, WEBSOCKET_REDIS_CLIENT, WEBSOCKET_REDIS_PREFIX']);
  });

  it('refuse modes, lists, sentinel names and TLS files that do not fit, naming each variable and never a password', async () => {
    const { redisSettingsFromEnv } = await import('../../src/redis/index');
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'roomwire-tls-'));
    const pem = join(dir, 'ca.pem');
    writeFileSync(pem, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const notPem = join(dir, 'ca.txt');
    writeFileSync(notPem, 'hello');
    const issues = (env: Record<string, string>) => {
      try {
        redisSettingsFromEnv(env);
      } catch (err) {
        return (err as RoomwireError).issues.map((i) => `${i.name}: ${i.message}`);
      }
      return [];
    };
    expect(issues({ WEBSOCKET_REDIS_URL: 'redis://u:secret@host:notaport' })).toEqual(['WEBSOCKET_REDIS_URL: "redis://u:***@host:notaport" is not a URL (expected redis://[user:password@]host[:port][/db])']);
    expect(issues({ WEBSOCKET_REDIS_URL: 'redis://a:1,redis://b:2' })).toEqual(['WEBSOCKET_REDIS_URL: lists several URLs; set WEBSOCKET_REDIS_MODE=cluster (seed nodes) or sentinel (the sentinels)']);
    expect(issues({ WEBSOCKET_REDIS_URL: 'redis://a:1,rediss://b:2', WEBSOCKET_REDIS_MODE: 'cluster' })).toEqual(['WEBSOCKET_REDIS_URL: mixes redis:// and rediss:// URLs; use one scheme for every node']);
    expect(issues({ WEBSOCKET_REDIS_URL: 'redis://a:1,', WEBSOCKET_REDIS_MODE: 'cluster' })).toEqual(['WEBSOCKET_REDIS_URL: has an empty entry in its comma-separated list']);
    expect(issues({ WEBSOCKET_REDIS_URL: 'redis://a:1', WEBSOCKET_REDIS_MODE: 'replicated' })).toEqual(['WEBSOCKET_REDIS_MODE: must be single, cluster or sentinel, not "replicated"']);
    expect(issues({ WEBSOCKET_REDIS_URL: 'redis://a:1', WEBSOCKET_REDIS_CLIENT: 'jedis' })).toEqual(['WEBSOCKET_REDIS_CLIENT: must be redis (node-redis) or ioredis, not "jedis"']);
    expect(issues({ WEBSOCKET_REDIS_URL: 'redis://a:1', WEBSOCKET_REDIS_MODE: 'sentinel' })).toEqual([
      'WEBSOCKET_REDIS_SENTINEL_NAME: is required with WEBSOCKET_REDIS_MODE=sentinel: the name of the master set the sentinels watch',
    ]);
    expect(issues({ WEBSOCKET_REDIS_URL: 'redis://a:1', WEBSOCKET_REDIS_SENTINEL_NAME: 'm' })).toEqual(['WEBSOCKET_REDIS_SENTINEL_NAME: is only used with WEBSOCKET_REDIS_MODE=sentinel, not single']);
    expect(issues({ WEBSOCKET_REDIS_URL: 'rediss://a:1', WEBSOCKET_REDIS_TLS_CA: join(dir, 'missing.pem') })).toEqual([`WEBSOCKET_REDIS_TLS_CA: cannot read "${join(dir, 'missing.pem')}": ENOENT`]);
    expect(issues({ WEBSOCKET_REDIS_URL: 'rediss://a:1', WEBSOCKET_REDIS_TLS_CA: notPem })).toEqual([`WEBSOCKET_REDIS_TLS_CA: "${notPem}" is not a PEM file`]);
    expect(issues({ WEBSOCKET_REDIS_URL: 'rediss://a:1', WEBSOCKET_REDIS_TLS_CERT: pem })).toEqual([
      'WEBSOCKET_REDIS_TLS_KEY: WEBSOCKET_REDIS_TLS_CERT and WEBSOCKET_REDIS_TLS_KEY go together (a client certificate and its key)',
    ]);
    expect(issues({ WEBSOCKET_REDIS_URL: 'redis://:secret@a:1', WEBSOCKET_REDIS_TLS_CA: pem })).toEqual(['WEBSOCKET_REDIS_URL: must be a rediss:// URL when WEBSOCKET_REDIS_TLS_* is set']);
    expect(issues({ WEBSOCKET_REDIS_MODE: 'cluster', WEBSOCKET_REDIS_TLS_CA: pem })).toEqual([
      'WEBSOCKET_REDIS_MODE: has no effect without WEBSOCKET_REDIS_URL',
      'WEBSOCKET_REDIS_TLS_CA: has no effect without WEBSOCKET_REDIS_URL',
    ]);
    expect(redisSettingsFromEnv({ WEBSOCKET_REDIS_URL: 'rediss://a:1', WEBSOCKET_REDIS_TLS_CA: pem, WEBSOCKET_REDIS_TLS_CERT: pem, WEBSOCKET_REDIS_TLS_KEY: pem })).toMatchObject({ tlsCa: pem, tlsCert: pem, tlsKey: pem });
  });

  it('make a memory broker when WEBSOCKET_REDIS_URL is unset, a Redis broker when set', async () => {
    const { redisBrokerFromEnv } = await import('../../src/redis/index');
    const memory = redisBrokerFromEnv({});
    expect(memory.health?.()).toEqual({ kind: 'memory', connected: true, processes: 1 });
    const redis = redisBrokerFromEnv({ WEBSOCKET_REDIS_URL: 'redis://127.0.0.1:1' }, { startTimeout: 50 });
    expect(redis.health?.()).toMatchObject({ kind: 'redis', connected: false });
    await redis.close();
  });

  it('are warned about once by the standalone server, not twice', async () => {
    const { serverConfigFromEnv } = await import('../../src/server/standalone');
    expect(serverConfigFromEnv({ WEBSOCKET_REDIS_URL: 'redis://h:6379', WEBSOCKET_REDIS_PREFX: 'x' }).warnings).toEqual([
      'WEBSOCKET_REDIS_PREFX is not a roomwire variable and is ignored; the Redis variables are WEBSOCKET_REDIS_URL, WEBSOCKET_REDIS_MODE, WEBSOCKET_REDIS_SENTINEL_NAME, WEBSOCKET_REDIS_TLS_CA, WEBSOCKET_REDIS_TLS_CERT, WEBSOCKET_REDIS_TLS_KEY, WEBSOCKET_REDIS_CLIENT, WEBSOCKET_REDIS_PREFIX',
    ]);
  });
});
