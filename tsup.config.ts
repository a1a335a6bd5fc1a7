import { defineConfig } from 'tsup';
import { clientBundle } from './scripts/client-bundle.mjs';

// The browser build of roomwire/client, inlined into the standalone server's chat page.
const define = { __ROOMWIRE_CLIENT_BUNDLE__: JSON.stringify(clientBundle()) };

export default defineConfig([
  {
    entry: {
      index: 'src/index.ts',
      node: 'src/adapters/node.ts',
      express: 'src/adapters/express.ts',
      fastify: 'src/adapters/fastify.ts',
      koa: 'src/adapters/koa.ts',
      prometheus: 'src/metrics/prometheus.ts',
      redis: 'src/redis/index.ts',
      server: 'src/server/standalone.ts',
      client: 'src/client/index.ts',
    },
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'node20',
    platform: 'node',
    splitting: true,
    // import.meta.url in the CommonJS build (roomwire/redis loads the optional 'redis' package).
    shims: true,
    define,
  },
  {
    entry: { 'bin/roomwire': 'src/bin/roomwire.ts' },
    format: ['esm'],
    target: 'node20',
    platform: 'node',
    banner: { js: '#!/usr/bin/env node' },
    define,
  },
]);
