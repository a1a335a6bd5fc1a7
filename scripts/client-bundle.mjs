// @ts-check
/**
 * The browser build of roomwire/client, minified, as text: an IIFE that defines the
 * global `roomwire` ({ createClient, RoomwireError, ... }). tsup and vitest both inline it
 * into the standalone server's chat page (the `__ROOMWIRE_CLIENT_BUNDLE__` constant).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** @returns {string} */
export function clientBundle() {
  const result = buildSync({
    entryPoints: [path.join(root, 'src/client/index.ts')],
    bundle: true,
    minify: true,
    format: 'iife',
    globalName: 'roomwire',
    platform: 'browser',
    target: 'es2020',
    write: false,
    legalComments: 'none',
  });
  return /** @type {import('esbuild').OutputFile} */ (result.outputFiles[0]).text;
}
