// Builds the browser dashboard (dashboard/src → dashboard/dist) with esbuild: one minified ES module,
// its CSS, and index.html naming both with a content hash so a rebuilt bundle is never served stale.
// Run by scripts/install-deps.sh after npm ci, by `npm run build:dashboard`, and by the dashboard's
// tests and bench when dist is missing. Usage: tsx scripts/build-dashboard.ts
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const here = join(import.meta.dirname, '../dashboard');
export const DIST = join(here, 'dist');

export async function buildDashboard(): Promise<{ js: number; css: number }> {
  rmSync(DIST, { recursive: true, force: true });
  mkdirSync(DIST, { recursive: true });
  await build({
    entryPoints: { app: join(here, 'src/main.tsx') },
    outdir: DIST,
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['chrome100', 'firefox100', 'safari15'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    legalComments: 'none',
    logLevel: 'warning',
  });
  const js = readFileSync(join(DIST, 'app.js'));
  const css = readFileSync(join(DIST, 'app.css'));
  const hash = createHash('sha256').update(js).update(css).digest('hex').slice(0, 12);
  writeFileSync(join(DIST, 'index.html'), readFileSync(join(here, 'index.html'), 'utf8').replaceAll('%HASH%', hash));
  return { js: js.length, css: css.length };
}

/** Builds unless a bundle is there already. */
export async function ensureDashboard(): Promise<void> {
  if (!existsSync(join(DIST, 'index.html'))) await buildDashboard();
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const r = await buildDashboard();
  console.log(`dashboard: ${DIST} (app.js ${(r.js / 1024).toFixed(1)} kB, app.css ${(r.css / 1024).toFixed(1)} kB)`);
}
