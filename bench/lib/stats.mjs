// @ts-check
/**
 * Small statistics: a log-bucketed latency histogram that client processes fill and
 * the harness merges, medians, and number formatting for the tables.
 */

/** Buckets per power of two: about 2.2% relative resolution. */
const SUB = 32;
/** Covers 1 µs to 2^32 µs (over an hour). */
export const HIST_BUCKETS = 32 * SUB + 1;

/** A fresh histogram (counts per bucket). */
export function newHistogram() {
  return new Float64Array(HIST_BUCKETS);
}

/**
 * Record one value (microseconds).
 * @param {Float64Array} h
 * @param {number} micros
 */
export function record(h, micros) {
  const i = micros < 1 ? 0 : Math.min(HIST_BUCKETS - 1, 1 + Math.floor(Math.log2(micros) * SUB));
  h[i]++;
}

/**
 * Add `b` into `a`.
 * @param {Float64Array} a
 * @param {ArrayLike<number>} b
 */
export function merge(a, b) {
  for (let i = 0; i < a.length; i++) a[i] += b[i] ?? 0;
  return a;
}

/**
 * The value at quantile `q` (0..1), the geometric middle of its bucket; NaN when empty.
 * @param {ArrayLike<number>} h
 * @param {number} q
 */
export function quantile(h, q) {
  let total = 0;
  for (let i = 0; i < h.length; i++) total += h[i];
  if (total === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < h.length; i++) {
    seen += h[i];
    if (seen >= rank) return i === 0 ? 0.5 : 2 ** ((i - 1 + 0.5) / SUB);
  }
  return Number.NaN;
}

/** @param {number[]} xs */
export function median(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** @param {number[]} xs */
export function minMax(xs) {
  const v = xs.filter((x) => Number.isFinite(x));
  return v.length === 0 ? [Number.NaN, Number.NaN] : [Math.min(...v), Math.max(...v)];
}

/**
 * Format a number with a thousands separator and `digits` decimals; '-' for NaN.
 * @param {number} x
 * @param {number} [digits]
 */
export function fmt(x, digits = 0) {
  if (x === undefined || x === null || !Number.isFinite(x)) return '-';
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/**
 * Format a ratio like 1.23x.
 * @param {number} x
 */
export function ratio(x) {
  return Number.isFinite(x) ? `${x.toFixed(2)}x` : '-';
}

/**
 * Microseconds as a readable latency.
 * @param {number} us
 */
export function latency(us) {
  if (!Number.isFinite(us)) return '-';
  if (us < 1000) return `${us.toFixed(0)}us`;
  if (us < 100_000) return `${(us / 1000).toFixed(2)}ms`;
  return `${(us / 1000).toFixed(0)}ms`;
}

/**
 * Render rows as an aligned text table (first column left-aligned, others right).
 * @param {string[]} header
 * @param {string[][]} rows
 */
export function table(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i] ?? '').length)));
  const line = (/** @type {string[]} */ r) =>
    r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/**
 * The same table as Markdown; the first `left` columns are left-aligned, the rest right.
 * @param {string[]} header
 * @param {string[][]} rows
 * @param {number} [left]
 */
export function markdownTable(header, rows, left = 1) {
  const esc = (/** @type {string} */ c) => String(c).replace(/\|/g, '\\|');
  return [
    `| ${header.map(esc).join(' | ')} |`,
    `| ${header.map((_, i) => (i < left ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

/**
 * The connection-rate clients' replies (bench/clients/connrate.mjs), summed: one latency
 * histogram, completed and failed handshakes, failures by cause, and closes after open.
 * @param {{ hist: any, completed: number, failed: number, failures: Record<string, number>, lateClosesAfterReady: number }[]} replies
 */
export function sumRateReplies(replies) {
  const hist = newHistogram();
  for (const r of replies) merge(hist, r.hist);
  /** @type {Record<string, number>} */
  const failures = {};
  for (const r of replies) for (const [k, n] of Object.entries(r.failures)) failures[k] = (failures[k] ?? 0) + n;
  return {
    hist,
    completed: replies.reduce((a, r) => a + r.completed, 0),
    failed: replies.reduce((a, r) => a + r.failed, 0),
    failures,
    abnormal: replies.reduce((a, r) => a + r.lateClosesAfterReady, 0),
  };
}

/**
 * The order of repetition `rep`: `items` rotated by `rep`, so over `items.length`
 * repetitions each item runs once in every position. (Alternating the order, A B C then
 * C B A, keeps the middle items in the middle, and the position within a repetition
 * matters on a busy machine.)
 * @template T
 * @param {readonly T[]} items
 * @param {number} rep
 * @returns {T[]}
 */
export function rotation(items, rep) {
  return items.map((_, i) => /** @type {T} */ (items[(i + rep) % items.length]));
}
