// `npm run bench -- <name> [args…]` runs perf/<name>.bench.ts. Each benchmark prints human-readable
// progress and, as its last line, one JSON object: {"bench":"<name>", …}.
// CANOPY_BENCH_SMOKE=1 makes any of them a tiny smoke run (perf/smoke.ts, RESULTS.md).
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const available = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .map((f) => f.slice(0, -'.bench.ts'.length))
  .sort();

const name = process.argv[2];
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- <name>\navailable: ${available.join(', ') || '(none yet)'}`);
  process.exit(2);
}
process.argv.splice(2, 1);
await import(pathToFileURL(join(here, `${name}.bench.ts`)).href);
