// The compiled command (scripts/build.ts): the bundle runs without the TypeScript loader, code that
// finds files beside its source (import.meta) still finds them from the bundle, and a subcommand loads
// only what it uses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, buildCanopy } from '../../../scripts/build.ts';

// Preloaded into the built CLI: prints the npm packages it loaded (CommonJS ones are in the require
// cache, however they were imported) when it exits.
const LOADED = `import { createRequire } from 'node:module';
const cache = createRequire(import.meta.url).cache;
process.on('exit', () => process.stderr.write('LOADED ' + JSON.stringify([...new Set(Object.keys(cache)
  .map((f) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(f)?.[1]).filter(Boolean))]) + '\\n'));`;

test('the built canopy runs on plain node, keeps the sources\' file locations, and loads only what a subcommand uses', async () => {
  const out = join(REPO, 'test/output', `build-${process.pid}`);
  try {
    await buildCanopy(out);
    writeFileSync(join(out, 'loaded.mjs'), LOADED);
    const run = (...args: string[]): string => execFileSync(process.execPath, [join(out, 'canopy.js'), ...args], {
      encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' },
    });
    assert.equal(run('--version').trim(), '0.1.0');
    assert.match(run('worker', '--help'), /run a worker daemon/);
    const loaded = (...args: string[]): string[] => {
      const r = execFileSync('sh', ['-c', `"${process.execPath}" --import "${join(out, 'loaded.mjs')}" "${join(out, 'canopy.js')}" "$@" 2>&1 >/dev/null`, 'sh', ...args], {
        encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' },
      });
      const line = r.split('\n').find((l) => l.startsWith('LOADED '));
      assert.ok(line, r);
      return JSON.parse(line.slice('LOADED '.length)) as string[];
    };
    // The worker daemon's code, without what only root, the cluster or a container needs.
    const worker = loaded('worker', '--help');
    assert.ok(worker.includes('mqtt'), `the worker's own packages load: ${worker.join(' ')}`);
    for (const p of ['tsx', 'esbuild', 'better-sqlite3', 'fastify', '@fastify/swagger', '@fastify/swagger-ui', '@fastify/jwt', 'ajv', 'aedes', '@grpc/grpc-js']) {
      assert.ok(!worker.includes(p), `a worker loads ${p}: ${worker.join(' ')}`);
    }
    const status = loaded('status', '--help');
    for (const p of ['fastify', 'mqtt', 'ajv', 'koffi', 'better-sqlite3']) assert.ok(!status.includes(p), `canopy status loads ${p}: ${status.join(' ')}`);
    // bin/canopy.js, which daemons are started with, is named relative to the source file, not to dist/.
    const bundle = readdirSync(out).filter((f) => f.endsWith('.js')).map((f) => readFileSync(join(out, f), 'utf8')).join('\n');
    assert.match(bundle, /new URL\("\.\.\/\.\.\/\.\.\/orchestrator\/deployment\/processes\.ts", import\.meta\.url\)/);
    // Resolved once: a URL wrapped in another one with the same relative path lands outside the checkout
    // (`canopy up` then started its daemons from <checkout>/orchestrator/bin/canopy.js).
    assert.doesNotMatch(bundle, /new URL\("[^"]*", new URL\(/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
