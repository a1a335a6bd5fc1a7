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
  },
});
