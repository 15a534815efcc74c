// The cgroup driver's choice and its file formats, on fake hierarchies in a temporary directory (the
// real v1 hierarchy is exercised by the runtime integration tests; this host has no usable v2).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, rmdirSync, mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectCgroups, v1Driver, v2Driver } from '../../../orchestrator/worker/cgroup.ts';

function tree(files: Record<string, string>, dirs: string[] = []): string {
  const root = mkdtempSync(join(tmpdir(), 'canopy-cg-'));
  for (const d of dirs) mkdirSync(join(root, d), { recursive: true });
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(join(root, f, '..'), { recursive: true });
    writeFileSync(join(root, f), text);
  }
  return root;
}

test('detection: unified v2, v1 controllers, hybrid with a usable unified mount, nothing', () => {
  const v2 = tree({ 'cgroup.controllers': 'cpuset cpu io memory pids\n' });
  const v1 = tree({ 'unified/cgroup.controllers': '\n' }, ['memory', 'cpu', 'cpuacct', 'pids', 'freezer']);
  const hybrid = tree({ 'unified/cgroup.controllers': 'cpu memory pids\n' }, ['memory']);
  const none = tree({}, ['memory']);
  try {
    assert.equal(detectCgroups(v2).version, 2);
    assert.equal(detectCgroups(v1).version, 1);
    const h = detectCgroups(hybrid);
    assert.equal(h.version, 2);
    assert.equal(h.root, join(hybrid, 'unified'));
    assert.throws(() => detectCgroups(none), /no usable cgroup hierarchy/);
  } finally {
    for (const d of [v2, v1, hybrid, none]) rmSync(d, { recursive: true, force: true });
  }
});

test('v2: limits written in cgroup v2 syntax, controllers delegated, counters parsed', async () => {
  const root = tree({ 'cgroup.controllers': 'cpu memory pids\n', 'cgroup.subtree_control': '' });
  try {
    const d = v2Driver(root);
    const g = d.create('canopy/w1/s-0', { memoryBytes: 64 << 20, vcpus: 0.5, pidsMax: 100 });
    const dir = join(root, 'canopy/w1/s-0');
    assert.equal(readFileSync(join(dir, 'memory.max'), 'utf8'), String(64 << 20));
    assert.equal(readFileSync(join(dir, 'cpu.max'), 'utf8'), '50000 100000');
    assert.equal(readFileSync(join(root, 'cgroup.subtree_control'), 'utf8'), '+memory +cpu +pids');
    g.setLimits({});
    assert.equal(readFileSync(join(dir, 'memory.max'), 'utf8'), 'max');
    assert.equal(readFileSync(join(dir, 'cpu.max'), 'utf8'), 'max 100000');
    writeFileSync(join(dir, 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n');
    writeFileSync(join(dir, 'cpu.stat'), 'usage_usec 1500\nuser_usec 1000\n');
    writeFileSync(join(dir, 'cgroup.procs'), '');
    assert.equal(g.oomKills(), 2);
    assert.equal(g.cpuUsageNs(), 1_500_000);
    assert.deepEqual(g.pids(), []);
    await g.killAll(10);
    assert.deepEqual(g.procsFiles, [join(dir, 'cgroup.procs')]);
    assert.deepEqual(d.children('canopy/w1'), ['s-0']);
    assert.equal(d.open('canopy/w1/none'), undefined);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('v1: one directory per controller, quota from vcpus, counters parsed', () => {
  const root = tree({}, ['memory', 'cpu', 'cpuacct', 'pids', 'freezer']);
  try {
    const d = v1Driver(root);
    const g = d.create('canopy/w1/s-0', { memoryBytes: 32 << 20, vcpus: 1.5 });
    assert.equal(readFileSync(join(root, 'memory/canopy/w1/s-0/memory.limit_in_bytes'), 'utf8'), String(32 << 20));
    assert.equal(readFileSync(join(root, 'cpu/canopy/w1/s-0/cpu.cfs_quota_us'), 'utf8'), '150000');
    assert.equal(readFileSync(join(root, 'pids/canopy/w1/s-0/pids.max'), 'utf8'), 'max');
    g.setLimits({ vcpus: 0.001 });
    assert.equal(readFileSync(join(root, 'cpu/canopy/w1/s-0/cpu.cfs_quota_us'), 'utf8'), '1000', 'the kernel minimum');
    assert.equal(readFileSync(join(root, 'memory/canopy/w1/s-0/memory.limit_in_bytes'), 'utf8'), '-1');
    writeFileSync(join(root, 'memory/canopy/w1/s-0/memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 4\n');
    writeFileSync(join(root, 'cpuacct/canopy/w1/s-0/cpuacct.usage'), '123456\n');
    writeFileSync(join(root, 'memory/canopy/w1/s-0/cgroup.procs'), '12\n13\n');
    writeFileSync(join(root, 'freezer/canopy/w1/s-0/cgroup.procs'), '13\n14\n');
    assert.equal(g.oomKills(), 4);
    assert.equal(g.cpuUsageNs(), 123456);
    assert.deepEqual(g.pids().sort(), [12, 13, 14]);
    assert.equal(g.procsFiles.length, 5);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('removeIfEmpty takes the shared canopy parent along with the last worker group, and never a parent in use', () => {
  const ctl = ['memory', 'cpu', 'cpuacct', 'pids', 'freezer'];
  const root = tree({}, ctl.flatMap((c) => [`${c}/canopy/w1`, `${c}/canopy/w2/s-0`]));
  try {
    const d = v1Driver(root);
    d.removeIfEmpty('canopy/w2');
    for (const c of ctl) assert.ok(existsSync(join(root, c, 'canopy/w2/s-0')), `${c}: a group with an instance stays`);
    d.removeIfEmpty('canopy/w1');
    for (const c of ctl) assert.equal(existsSync(join(root, c, 'canopy/w1')), false, `${c}: empty worker group removed`);
    for (const c of ctl) assert.ok(existsSync(join(root, c, 'canopy')), `${c}: canopy kept while w2 has groups`);
    for (const c of ctl) rmdirSync(join(root, c, 'canopy/w2/s-0'));
    d.removeIfEmpty('canopy/w2');
    for (const c of ctl) assert.equal(existsSync(join(root, c, 'canopy')), false, `${c}: canopy removed with the last worker`);
    for (const c of ctl) assert.ok(existsSync(join(root, c)), `${c}: the hierarchy root is never touched`);
    d.removeIfEmpty('canopy/w3');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
