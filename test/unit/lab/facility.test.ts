// A missing facility skips a test loudly outside CI and fails it under CI=true, naming what is missing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { binaryMissing, unavailable } from '../../support/facility.ts';

function withCI<T>(value: string | undefined, f: () => T): T {
  const saved = process.env.CI;
  if (value === undefined) delete process.env.CI;
  else process.env.CI = value;
  try {
    return f();
  } finally {
    if (saved === undefined) delete process.env.CI;
    else process.env.CI = saved;
  }
}

test('nothing missing: the test runs, in CI or not', () => {
  assert.equal(withCI('true', () => unavailable(null)), false);
  assert.equal(withCI(undefined, () => unavailable(null)), false);
});

test('outside CI a missing facility is a skip with its reason', () => {
  assert.equal(withCI(undefined, () => unavailable('lab tests need /dev/net/tun')), 'lab tests need /dev/net/tun');
});

test('with CI=true a missing facility fails, naming it', () => {
  assert.throws(() => withCI('true', () => unavailable('lab tests need /dev/net/tun')), /CI=true.*lab tests need \/dev\/net\/tun/);
});

test('only an absent binary counts as missing', () => {
  assert.equal(binaryMissing('canopy-no-such-binary-xyz'), 'canopy-no-such-binary-xyz not installed');
  assert.equal(binaryMissing('false', []), null, 'a binary that exits non-zero is present');
});

test('test/run.sh fails a run with a skip when CANOPY_NO_SKIPS=1, and counts it otherwise', () => {
  const dir = join(import.meta.dirname, '../../..');
  // The inner runner must not report into this one (node:test passes NODE_TEST_CONTEXT down).
  const { NODE_TEST_CONTEXT: _ctx, ...base } = process.env;
  const file = join(import.meta.dirname, 'fixtures-skip.ts');
  const loud = spawnSync('bash', ['test/run.sh', 'unit', file], { cwd: dir, encoding: 'utf8', env: { ...base, CI: '', CANOPY_NO_SKIPS: '' } });
  assert.equal(loud.status, 0, loud.stderr);
  assert.match(loud.stdout, /# skipped or todo: 1\n#\s+a facility test # SKIP pretend: no such facility/);
  const strict = spawnSync('bash', ['test/run.sh', 'unit', file], { cwd: dir, encoding: 'utf8', env: { ...base, CI: '', CANOPY_NO_SKIPS: '1' } });
  assert.equal(strict.status, 1);
  const ci = spawnSync('bash', ['test/run.sh', 'unit', file], { cwd: dir, encoding: 'utf8', env: { ...base, CI: 'true', CANOPY_NO_SKIPS: '' } });
  assert.equal(ci.status, 1);
  assert.match(ci.stdout, /pretend: no such facility/);
});
