// A killed test run can leave a worker's instances behind (instances outlive their daemon by design,
// for re-adoption). The sweeper removes those whose daemon is gone and keeps a live daemon's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { detectCgroups } from '../../orchestrator/worker/cgroup.ts';
import { DAEMONS_DIR, removeDaemonMarker, writeDaemonMarker } from '../../orchestrator/worker/daemon-marker.ts';
import { listNetnsSync } from '../../orchestrator/deployment/iproute.ts';
import { sweepWorkers } from '../../lab/sweep-workers.ts';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { needRoot, unavailable } from '../support/facility.ts';

function instance(wid: string, key: string): { ns: string; rel: string; child: ChildProcess } {
  const ns = `canopy-${wid}-${key}`;
  const rel = `canopy/${wid}/${key}`;
  execFileSync('ip', ['netns', 'add', ns]);
  const cg = detectCgroups().create(rel, {});
  const child = spawn('ip', ['netns', 'exec', ns, 'sleep', '600'], { stdio: 'ignore' });
  for (const f of cg.procsFiles) writeFileSync(f, String(child.pid));
  return { ns, rel, child };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('the sweeper removes a dead daemon\'s instances and keeps a live one\'s', { skip: unavailable(needRoot()) }, async () => {
  const dead = `swd${randomBytes(3).toString('hex')}`;
  const live = `swl${randomBytes(3).toString('hex')}`;
  const a = instance(dead, 'svc-0');
  const b = instance(live, 'svc-0');
  // A marker whose process is gone (pid 0 never matches a start time) and one for this process.
  mkdirSync(DAEMONS_DIR, { recursive: true });
  writeFileSync(join(DAEMONS_DIR, `${dead}.json`), JSON.stringify({ pid: 2 ** 22 + 1, start: 'x' }));
  writeDaemonMarker(live);
  const cg = detectCgroups();
  try {
    const r = await sweepWorkers();
    assert.ok(r.namespaces.includes(a.ns), `swept ${JSON.stringify(r)}`);
    assert.ok(r.cgroups.includes(a.rel));
    assert.ok(!listNetnsSync().includes(a.ns), 'dead daemon\'s namespace removed');
    assert.equal(cg.open(a.rel), undefined, 'dead daemon\'s cgroup removed');
    await new Promise((res) => setTimeout(res, 100));
    assert.ok(!alive(a.child.pid!), 'dead daemon\'s instance process killed');

    assert.ok(listNetnsSync().includes(b.ns), 'live daemon\'s namespace kept');
    assert.notEqual(cg.open(b.rel), undefined, 'live daemon\'s cgroup kept');
    assert.ok(alive(b.child.pid!), 'live daemon\'s instance keeps running');
  } finally {
    removeDaemonMarker(dead);
    removeDaemonMarker(live);
    await cg.open(b.rel)?.destroy();
    cg.removeIfEmpty(`canopy/${live}`);
    await cg.open(a.rel)?.destroy();
    cg.removeIfEmpty(`canopy/${dead}`);
    for (const ns of [a.ns, b.ns]) if (listNetnsSync().includes(ns)) execFileSync('ip', ['netns', 'delete', ns]);
    a.child.kill('SIGKILL');
    b.child.kill('SIGKILL');
  }
});
