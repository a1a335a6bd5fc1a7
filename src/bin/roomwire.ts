/**
 * The `roomwire` command: the standalone hub server with its configuration from the
 * environment. See docs/configuration.md.
 */
import { main } from '../server/main';

void main();
