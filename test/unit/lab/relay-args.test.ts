// The relay refuses bad invocations with one clear JSON log line and exit status 2, before it
// touches any device (so this needs no root).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { REPO_ROOT } from '../../../lab/lab.ts';

function relay(...args: string[]): { status: number | null; msg: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'lab/impair-relay.ts', ...args], {
    cwd: REPO_ROOT, encoding: 'utf8', timeout: 30_000,
  });
  const last = r.stderr.trim().split('\n').pop() ?? '';
  let msg = last;
  try {
    msg = (JSON.parse(last) as { msg: string }).msg;
  } catch { /* not JSON: the assertion below shows it */ }
  return { status: r.status, msg };
}

const base = ['--name', 'w1', '--host-tap', 'h1', '--switch-tap', 'p1', '--stats', '/nonexistent/x.json'];

test('missing arguments', () => {
  const r = relay('--name', 'w1');
  assert.equal(r.status, 2);
  assert.match(r.msg, /usage: impair-relay/);
});

test('config that is not JSON, or out of range', () => {
  let r = relay(...base, '--config', '{"link":');
  assert.equal(r.status, 2);
  assert.match(r.msg, /bad --config/);
  r = relay(...base, '--config', JSON.stringify({ link: { lossPct: 200 }, pairs: [] }));
  assert.equal(r.status, 2);
  assert.match(r.msg, /bad --config: .*lossPct/);
  r = relay(...base, '--config', JSON.stringify({ link: null, pairs: [{ peer: 'w2', addrs: ['not-an-ip'], impairment: { delayMs: 1 } }] }));
  assert.equal(r.status, 2);
  assert.match(r.msg, /bad --config: .*not an IP/);
});

test('bad MTU', () => {
  const r = relay(...base, '--mtu', 'big', '--config', JSON.stringify({ link: { delayMs: 1 }, pairs: [] }));
  assert.equal(r.status, 2);
  assert.match(r.msg, /bad --mtu/);
});
