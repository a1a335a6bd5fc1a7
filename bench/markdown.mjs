// @ts-check
/**
 * Print the tables of a results file as Markdown (for docs/performance.md):
 *   node bench/markdown.mjs [bench/results/latest.json]
 */
import { readFileSync } from 'node:fs';
import { report } from './lib/report.mjs';

const file = process.argv[2] ?? 'bench/results/latest.json';
const doc = JSON.parse(readFileSync(file, 'utf8'));
const m = doc.meta;
console.log(`Run of ${m.date} (roomwire ${m.roomwire?.commit ?? '?'}${m.roomwire?.srcUncommittedFiles ? ' + uncommitted src changes' : ''}): \`${m.command}\`, ${m.durationSeconds} s; ${m.machine.nproc} CPUs (${m.machine.cpuModel}), ` +
  `node ${m.machine.node}, ${m.machine.os}; load average ${m.loadAverageStart.map((/** @type {number} */ x) => x.toFixed(2)).join(' ')} at the start.\n`);
console.log(report(doc).markdown);
const problems = doc.problems ?? [];
console.log(`\nProblems: ${problems.length === 0 ? 'none' : ''}`);
for (const p of problems) console.log(`- [${p.scenario}/${p.target}] ${p.what}`);
