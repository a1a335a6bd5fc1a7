import { defineConfig } from 'vitest/config';
import { clientBundle } from './scripts/client-bundle.mjs';

export default defineConfig({
  // The browser build of roomwire/client, inlined into the chat page (as tsup does).
  define: { __ROOMWIRE_CLIENT_BUNDLE__: JSON.stringify(clientBundle()) },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
    // Type tests (*.test-d.ts) are compiled by tsc and their expectTypeOf assertions
    // reported as tests: a wrong public type fails `npm test`.
    typecheck: { enabled: true, include: ['test/**/*.test-d.ts'], tsconfig: 'test/tsconfig.json' },
  },
});
