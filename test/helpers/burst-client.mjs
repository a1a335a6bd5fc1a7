// Opens N WebSocket connections at once from its own process (so the server, in another
// process, accepts them as one burst) and prints how each ended, as JSON: {"open": N, ...}.
// Usage: node burst-client.mjs <port> <n> <path prefix>
import WebSocket from 'ws';

const [port, n, prefix] = [process.argv[2], Number(process.argv[3]), process.argv[4] ?? '/ws/burst'];
const outcomes = await Promise.all(
  Array.from(
    { length: n },
    (_, i) =>
      new Promise((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}${prefix}${i % 4}`);
        ws.on('open', () => resolve({ outcome: 'open', ws }));
        ws.on('unexpected-response', (_req, res) => resolve({ outcome: `http ${res.statusCode}` }));
        ws.on('error', (e) => resolve({ outcome: e.code ?? e.message }));
      }),
  ),
);
const tally = {};
for (const { outcome } of outcomes) tally[outcome] = (tally[outcome] ?? 0) + 1;
process.stdout.write(`${JSON.stringify(tally)}\n`);
// Every connection stayed open until all had an outcome; close them and leave.
for (const { ws } of outcomes) ws?.terminate();
process.exit(0);
