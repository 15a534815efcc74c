// The compiled command (scripts/build.ts): the bundle runs without the TypeScript loader, and code that
// finds files beside its source (import.meta) still finds them from the bundle.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, buildCanopy } from '../../../scripts/build.ts';

test('the built canopy runs on plain node and keeps the sources\' file locations', async () => {
  const out = join(REPO, 'test/output', `build-${process.pid}`);
  try {
    await buildCanopy(out);
    const run = (...args: string[]) => execFileSync(process.execPath, [join(out, 'canopy.js'), ...args], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
    assert.equal(run('--version').trim(), '0.1.0');
    assert.match(run('worker', '--help'), /run a worker daemon/);
    // No loader in the process: nothing from tsx or esbuild is imported by the bundle.
    const bundle = readFileSync(join(out, 'canopy.js'), 'utf8');
    assert.doesNotMatch(bundle, /from ["'](tsx|esbuild)/);
    // bin/canopy.js, which daemons are started with, is named relative to the source file, not to dist/.
    assert.match(bundle, /new URL\("\.\.\/\.\.\/\.\.\/orchestrator\/deployment\/processes\.ts", import\.meta\.url\)/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
