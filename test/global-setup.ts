/** Build dist/ once before the tests that run the package as users and operators do. */
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  execFileSync(process.execPath, ['node_modules/tsup/dist/cli-default.js', '--silent'], { stdio: 'inherit' });
  // roomwire/protocol.schema.json, as `npm run build` writes it (docs/asyncapi.yaml is left alone).
  execFileSync(process.execPath, ['scripts/protocol.mjs', '--schema-only'], { stdio: 'inherit' });
}
