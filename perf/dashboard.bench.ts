// The dashboard's weight and first load: the shipped JavaScript gzipped, and the time from navigating
// to root's `/` in a fresh headless Chromium until the login form is on screen (median of the runs).
// Root runs in this process on loopback with an empty database.
//   npm run bench -- dashboard [runs=10]      CANOPY_BENCH_SMOKE=1: one run
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { jsonLogger } from '../orchestrator/protocol/log.ts';
import { RootServer } from '../orchestrator/root/server.ts';
import { DIST, ensureDashboard } from '../scripts/build-dashboard.ts';
import { CHROMIUM, CHROMIUM_FLAGS } from '../harness/chromium.ts';

const RUNS = process.env.CANOPY_BENCH_SMOKE === '1' ? 1 : Number(process.argv[2] ?? 10);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`runs must be a positive integer, got ${process.argv[2]}`);

await ensureDashboard();
const jsGzipKb = gzipSync(readFileSync(join(DIST, 'app.js')), { level: 9 }).length / 1024;
console.log(`app.js: ${jsGzipKb.toFixed(1)} kB gzipped`);

const tmp = mkdtempSync(join(tmpdir(), 'canopy-bench-dashboard-'));
const root = await RootServer.start({
  dataDir: join(tmp, 'root'), host: '127.0.0.1', port: 0, adminPassword: 'bench-password-123', clusterKey: 'bench',
  log: jsonLogger({ component: 'root' }, 'error'), announce: () => undefined,
});
const times: number[] = [];
try {
  for (let i = 0; i < RUNS; i++) {
    // A fresh profile each run: nothing cached.
    const context = await chromium.launchPersistentContext(join(tmp, `profile-${i}`), { executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
    try {
      const page = context.pages()[0] ?? await context.newPage();
      const t0 = performance.now();
      await page.goto(root.url);
      await page.locator('#username').waitFor();
      times.push(performance.now() - t0);
      console.log(`run ${i + 1}/${RUNS}: ${times.at(-1)!.toFixed(0)} ms`);
    } finally {
      await context.close();
    }
  }
} finally {
  await root.close();
  rmSync(tmp, { recursive: true, force: true });
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)]!;
console.log(JSON.stringify({ bench: 'dashboard', first_load_ms: Math.round(median), js_gzip_kb: Number(jsGzipKb.toFixed(1)), runs: RUNS }));
