import { defineConfig } from 'tsup';

export default defineConfig([
  {
    entry: {
      index: 'src/index.ts',
      node: 'src/adapters/node.ts',
      express: 'src/adapters/express.ts',
      fastify: 'src/adapters/fastify.ts',
      koa: 'src/adapters/koa.ts',
      prometheus: 'src/metrics/prometheus.ts',
      server: 'src/server/standalone.ts',
    },
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'node20',
    platform: 'node',
    splitting: true,
  },
  {
    entry: { 'bin/roomwire': 'src/bin/roomwire.ts' },
    format: ['esm'],
    target: 'node20',
    platform: 'node',
    banner: { js: '#!/usr/bin/env node' },
  },
]);
