// @ts-check
/**
 * CPU profiles of the servers (`node --cpu-prof`, written at exit) turned into what a
 * reader can use: a flame graph as a standalone SVG (hover a frame for its name, file and
 * share) and a table of where the busy time went, by part (roomwire's code, `ws`, Node's
 * own JavaScript, native code, garbage collection) and by function (self time).
 *
 * Only busy samples count: `(idle)` is left out, so shares are of the time the process
 * actually used the CPU.
 */
import fs from 'node:fs';
import path from 'node:path';

/**
 * @typedef {{ functionName: string, url: string, lineNumber: number, columnNumber: number }} CallFrame
 * @typedef {{ id: number, callFrame: CallFrame, hitCount?: number, children?: number[] }} ProfileNode
 * @typedef {{ nodes: ProfileNode[], samples?: number[], startTime: number, endTime: number }} CpuProfile
 * @typedef {{ name: string, where: string, part: string, self: number, total: number, children: Frame[] }} Frame
 */

/** The part of the program a call frame belongs to. @param {CallFrame} cf */
export function partOf(cf) {
  const url = cf.url;
  const name = cf.functionName;
  if (name === '(garbage collector)') return 'gc';
  if (name === '(program)' || name === '(root)') return 'native';
  if (url === '') return 'native';
  if (url.includes('/node_modules/ws/')) return 'ws';
  if (url.includes('/node_modules/')) return 'dependencies';
  if (url.startsWith('node:')) return 'node';
  if (url.includes('/dist/') || url.includes('/bench/servers/')) return 'server';
  return 'other';
}

/** Colours of the parts in the SVG. */
const COLOURS = /** @type {Record<string, string>} */ ({
  server: '#e8743b',
  ws: '#4a90d9',
  node: '#9ccc65',
  dependencies: '#ba68c8',
  native: '#bdbdbd',
  gc: '#f2c94c',
  other: '#80cbc4',
});

/**
 * Read a `.cpuprofile` and build its call tree with busy sample counts (self and total).
 * @param {string} file
 * @returns {{ root: Frame, busy: number, idle: number, intervalUs: number }}
 */
export function readProfile(file) {
  /** @type {CpuProfile} */
  const profile = JSON.parse(fs.readFileSync(file, 'utf8'));
  /** @type {Map<number, ProfileNode>} */
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  /** @type {Map<number, number>} */
  const hits = new Map();
  if (profile.samples !== undefined) {
    for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  } else {
    for (const n of profile.nodes) hits.set(n.id, n.hitCount ?? 0);
  }
  const samples = profile.samples?.length ?? [...hits.values()].reduce((a, b) => a + b, 0);
  const intervalUs = samples > 0 ? (profile.endTime - profile.startTime) / samples : 0;
  let idle = 0;
  /** @param {ProfileNode} n @returns {Frame} */
  const build = (n) => {
    const cf = n.callFrame;
    const name = cf.functionName === '' ? '(anonymous)' : cf.functionName;
    const where = cf.url === '' ? '' : `${cf.url.replace(/^file:\/\//, '').replace(/^.*\/(dist|bench|node_modules)\//, '$1/')}:${cf.lineNumber + 1}`;
    const children = [];
    let self = hits.get(n.id) ?? 0;
    if (name === '(idle)') {
      idle += self;
      self = 0;
    }
    for (const id of n.children ?? []) {
      const child = build(/** @type {ProfileNode} */ (byId.get(id)));
      if (child.total > 0) children.push(child);
    }
    const total = self + children.reduce((a, c) => a + c.total, 0);
    children.sort((a, b) => b.total - a.total);
    return { name, where, part: partOf(cf), self, total, children };
  };
  const root = build(/** @type {ProfileNode} */ (profile.nodes[0]));
  root.name = 'all busy samples';
  return { root, busy: root.total, idle, intervalUs };
}

/**
 * Where the busy time went: per part, and the functions with the most self time.
 * @param {Frame} root
 * @param {number} [top]
 */
export function summarize(root, top = 15) {
  /** @type {Record<string, number>} */
  const parts = {};
  /** @type {Map<string, { name: string, where: string, part: string, self: number }>} */
  const fns = new Map();
  /** @param {Frame} f */
  const walk = (f) => {
    if (f.self > 0) {
      parts[f.part] = (parts[f.part] ?? 0) + f.self;
      const key = `${f.name} ${f.where}`;
      const e = fns.get(key);
      if (e) e.self += f.self;
      else fns.set(key, { name: f.name, where: f.where, part: f.part, self: f.self });
    }
    for (const c of f.children) walk(c);
  };
  walk(root);
  const busy = root.total || 1;
  return {
    parts: Object.fromEntries(Object.entries(parts).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, v / busy])),
    functions: [...fns.values()].sort((a, b) => b.self - a.self).slice(0, top).map((f) => ({ ...f, share: f.self / busy })),
  };
}

/** @param {string} s */
const escape = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * A flame graph of `root` as a standalone SVG: the root at the bottom, callees above their
 * callers, widths in proportion to busy samples; frames under `minShare` are left out.
 * @param {Frame} root
 * @param {{ title: string, width?: number, minShare?: number }} options
 */
export function flameSvg(root, { title, width = 1200, minShare = 0.001 }) {
  const rowH = 16;
  const pad = 10;
  const top = 44;
  const legendH = 22;
  const total = root.total || 1;
  const usable = width - 2 * pad;
  /** @type {{ x: number, w: number, depth: number, f: Frame }[]} */
  const rects = [];
  let maxDepth = 0;
  /** @param {Frame} f @param {number} x @param {number} depth */
  const place = (f, x, depth) => {
    const w = (f.total / total) * usable;
    if (f.total / total < minShare) return;
    rects.push({ x, w, depth, f });
    if (depth > maxDepth) maxDepth = depth;
    let cx = x;
    for (const c of f.children) {
      place(c, cx, depth + 1);
      cx += (c.total / total) * usable;
    }
  };
  place(root, pad, 0);
  const height = top + (maxDepth + 1) * rowH + legendH + pad;
  const base = top + maxDepth * rowH;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Verdana, sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fdfdfd"/>`,
    `<text x="${pad}" y="18" font-size="14">${escape(title)}</text>`,
    `<text x="${pad}" y="34" fill="#555">Width: share of the busy samples (idle left out). Hover a frame for its file and share. Frames under ${(minShare * 100).toFixed(1)}% are not drawn.</text>`,
  ];
  for (const { x, w, depth, f } of rects) {
    const y = base - depth * rowH;
    const share = ((f.total / total) * 100).toFixed(2);
    const selfShare = ((f.self / total) * 100).toFixed(2);
    const label = w > 30 ? f.name.slice(0, Math.floor((w - 6) / 6.6)) : '';
    out.push(
      `<g><title>${escape(`${f.name}${f.where ? ` (${f.where})` : ''}: ${share}% total, ${selfShare}% self [${f.part}]`)}</title>` +
        `<rect x="${x.toFixed(2)}" y="${y}" width="${Math.max(0.5, w - 0.5).toFixed(2)}" height="${rowH - 1}" fill="${COLOURS[f.part] ?? '#ccc'}" rx="2"/>` +
        (label ? `<text x="${(x + 3).toFixed(2)}" y="${y + 12}">${escape(label)}</text>` : '') +
        `</g>`,
    );
  }
  let lx = pad;
  const ly = height - pad - 4;
  for (const [part, colour] of Object.entries(COLOURS)) {
    out.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${colour}"/><text x="${lx + 16}" y="${ly}">${part}</text>`);
    lx += 30 + part.length * 7;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/**
 * Every `.cpuprofile` under `dir/<target>/`: merged per target (one server process, or
 * the processes of a scale-out target, each a subtree), rendered to `dir/<target>.svg`,
 * and summarized.
 * @param {string} dir
 */
export function renderProfiles(dir) {
  /** @type {Record<string, { svg: string, busyMs: number, files: number, summary: ReturnType<typeof summarize> }>} */
  const out = {};
  for (const target of fs.readdirSync(dir).sort()) {
    const sub = path.join(dir, target);
    if (!fs.statSync(sub).isDirectory()) continue;
    const files = fs.readdirSync(sub).filter((f) => f.endsWith('.cpuprofile')).sort();
    if (files.length === 0) continue;
    const profiles = files.map((f) => readProfile(path.join(sub, f)));
    /** @type {Frame} */
    const root = profiles.length === 1
      ? profiles[0].root
      : { name: 'all busy samples', where: '', part: 'native', self: 0, total: profiles.reduce((a, p) => a + p.root.total, 0), children: profiles.map((p, i) => ({ ...p.root, name: `process ${i + 1}` })) };
    const busyMs = profiles.reduce((a, p) => a + (p.busy * p.intervalUs) / 1000, 0);
    const svg = path.join(dir, `${target}.svg`);
    fs.writeFileSync(svg, flameSvg(root, { title: `${target}: CPU profile of the server (${Math.round(busyMs).toLocaleString('en-US')} ms busy)` }));
    out[target] = { svg, busyMs, files: files.length, summary: summarize(root) };
  }
  return out;
}
