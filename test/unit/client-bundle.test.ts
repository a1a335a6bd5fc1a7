/**
 * roomwire/client stays small and portable: its browser bundle (esbuild, minified, gzip)
 * is under 6 KB, and it pulls in no zod, no ws and no Node built-in.
 */
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { buildSync } from 'esbuild';
import { describe, expect, it } from 'vitest';

const entry = path.resolve(__dirname, '../../src/client/index.ts');

describe('the roomwire/client bundle', () => {
  it('is under 6 KB minified and gzipped (socket.io-client publishes 14.7 KB)', () => {
    const out = buildSync({ entryPoints: [entry], bundle: true, minify: true, format: 'esm', platform: 'browser', write: false, metafile: true });
    const bytes = gzipSync(out.outputFiles[0]!.contents, { level: 9 }).length;
    console.log(`roomwire/client: ${bytes} bytes minified + gzip`);
    expect(bytes).toBeLessThan(6 * 1024);
    // Only the client and the error class: no zod, no ws, no Node built-in.
    const inputs = Object.keys(out.metafile!.inputs).map((f) => path.relative(path.resolve(__dirname, '../..'), f));
    expect(inputs.sort()).toEqual(['src/client/index.ts', 'src/core/errors.ts']);
  });
});
