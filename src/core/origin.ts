/**
 * The `Origin` allow-list: exact origins, `*`, and patterns with one leading wildcard
 * label (`https://*.example.com`, any subdomain at any depth, not the apex itself).
 */

// Hosts as browsers serialize them in Origin: DNS labels (IDNs arrive as punycode),
// IPv4, or bracketed IPv6.
const ORIGIN = /^([a-z][a-z0-9+.-]*):\/\/(\*\.)?(\[[0-9a-f:.]+\]|[a-z0-9_-]+(?:\.[a-z0-9_-]+)*)(?::(\d{1,5}))?\/?$/i;
const DEFAULT_PORT: Record<string, string> = { http: '80', https: '443', ws: '80', wss: '443' };

interface ParsedOrigin {
  readonly scheme: string;
  readonly wildcard: boolean;
  readonly host: string;
  readonly port: string;
}

function parse(text: string): ParsedOrigin | undefined {
  const m = ORIGIN.exec(text);
  if (!m) return undefined;
  const scheme = (m[1] as string).toLowerCase();
  const port = m[4] === undefined || m[4] === DEFAULT_PORT[scheme] ? '' : String(Number(m[4]));
  return { scheme, wildcard: m[2] !== undefined, host: (m[3] as string).toLowerCase(), port };
}

function format(o: ParsedOrigin): string {
  return `${o.scheme}://${o.wildcard ? '*.' : ''}${o.host}${o.port ? `:${o.port}` : ''}`;
}

/**
 * Validate and normalize one allow-list entry: `*`, an exact origin
 * (`https://app.example.com:8443`) or a wildcard one (`https://*.example.com`).
 * Scheme and host are lower-cased and default ports dropped, as browsers send them.
 * Throws a string describing the problem.
 *
 * @example normalizeOriginPattern('HTTPS://*.Example.com:443') // 'https://*.example.com'
 */
export function normalizeOriginPattern(pattern: string): string {
  if (pattern === '*') return pattern;
  const o = parse(pattern);
  if (!o) throw `"${pattern}" is not an origin such as https://app.example.com or https://*.example.com`;
  return format(o);
}

/**
 * Compile an allow-list into a predicate over `Origin` header values. An origin is
 * allowed when `*` is listed, when it equals an entry (after normalization), or when
 * its host ends with `.<suffix>` of a wildcard entry of the same scheme and port.
 */
export function compileOrigins(patterns: readonly string[]): (origin: string) => boolean {
  if (patterns.includes('*')) return () => true;
  const exact = new Set<string>();
  const wild: ParsedOrigin[] = [];
  for (const p of patterns) {
    const o = parse(p);
    if (!o) continue;
    if (o.wildcard) wild.push(o);
    else exact.add(format(o));
  }
  return (origin) => {
    const o = parse(origin);
    if (!o || o.wildcard) return false;
    if (exact.has(format(o))) return true;
    for (const w of wild) {
      if (w.scheme === o.scheme && w.port === o.port && o.host.endsWith(`.${w.host}`)) return true;
    }
    return false;
  };
}
