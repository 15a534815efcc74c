// Nothing a lab made survives its owner: SIGTERM and uncaught exceptions clean up on the way out,
// and after a SIGKILL the sweeper (run before every integration run) removes the rest.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { labSkipReason, REPO_ROOT } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { listNetnsSync } from '../../lab/iproute.ts';
import { registryPath } from '../../lab/registry.ts';

const skip = unavailable(labSkipReason());

interface ChildReport {
  prefix: string;
  relays: number[];
  children: number[];
  namespaces: string[];
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie has exited; only its parent has not collected it yet.
  try {
    return !/\) Z /.test(execFileSync('cat', [`/proc/${pid}/stat`], { encoding: 'utf8' }));
  } catch {
    return false;
  }
}

async function startOwner(then: 'hold' | 'throw'): Promise<{ child: ChildProcess; report: ChildReport }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'lab/tools/lab-child.ts', then], {
    cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const lines = createInterface({ input: child.stdout! });
  const first = await Promise.race([
    once(lines, 'line').then(([l]) => l as string),
    once(child, 'exit').then(() => { throw new Error(`lab owner exited early: ${err}`); }),
  ]);
  return { child, report: JSON.parse(first) as ChildReport };
}

function sweepCli(...args: string[]): void {
  execFileSync(process.execPath, ['--import', 'tsx', 'lab/sweep-cli.ts', ...args], { cwd: REPO_ROOT, stdio: 'inherit' });
}

async function assertGone(r: ChildReport): Promise<void> {
  // Killed processes may take a moment to be reaped by init.
  for (let i = 0; i < 100 && [...r.relays, ...r.children].some(running); i++) await sleep(20);
  const ns = listNetnsSync();
  assert.deepEqual(r.namespaces.filter((n) => ns.includes(n)), [], 'namespaces left');
  assert.deepEqual(ns.filter((n) => n.startsWith(r.prefix)), [], 'namespaces with the prefix left');
  for (const pid of r.relays) assert.equal(running(pid), false, `relay ${pid} still runs`);
  for (const pid of r.children) assert.equal(running(pid), false, `child ${pid} still runs`);
  assert.equal(existsSync(registryPath(r.prefix)), false, 'registry file left');
  for (const n of r.namespaces) assert.equal(existsSync(`/etc/netns/${n}`), false, `/etc/netns/${n} left`);
  assert.doesNotMatch(execFileSync('ip', ['link'], { encoding: 'utf8' }), new RegExp(r.prefix), 'links left in the root namespace');
}

describe('lab cleanup', { skip, timeout: 120_000 }, () => {
  it('after the owner is SIGKILLed, the sweeper removes namespaces, relays, children and the registry', async () => {
    const { child, report } = await startOwner('hold');
    assert.ok(report.relays.length > 0, 'the lab has a relay');
    assert.ok(report.relays.every(running) && report.children.every(running));
    // A live owner's lab is not the sweeper's business.
    sweepCli();
    assert.ok(existsSync(registryPath(report.prefix)), 'sweeper must keep a live lab');
    assert.ok(listNetnsSync().includes(report.namespaces[0]!));

    // Something a test might have put beside a namespace (ip netns exec bind-mounts it).
    mkdirSync(`/etc/netns/${report.namespaces[1]}`, { recursive: true });
    writeFileSync(`/etc/netns/${report.namespaces[1]}/resolv.conf`, 'nameserver 198.18.0.1\n');
    child.kill('SIGKILL');
    await once(child, 'exit');
    // Nobody cleaned up: the owner had no chance. The child in the host namespace would run for 10 min.
    assert.ok(existsSync(registryPath(report.prefix)));
    assert.ok(report.children.every(running), 'the spawned child outlives its killed owner');
    sweepCli();
    await assertGone(report);
  });

  it('SIGTERM to the owner removes everything on the way out', async () => {
    const { child, report } = await startOwner('hold');
    child.kill('SIGTERM');
    const [code, signal] = await once(child, 'exit') as [number | null, string | null];
    assert.ok(signal === 'SIGTERM' || code !== 0, 'the owner still dies of SIGTERM');
    await assertGone(report);
  });

  it('an uncaught exception in the owner removes everything on the way out', async () => {
    const { child, report } = await startOwner('throw');
    const [code] = await once(child, 'exit') as [number | null];
    assert.notEqual(code, 0);
    await assertGone(report);
  });

  it('the sweeper removes namespaces named like a lab that no registry claims, and nothing else', async () => {
    const orphan = `cl${(process.pid & 0xffff).toString(16).padStart(4, '0')}-orphan`;
    const foreign = `keep${process.pid}`;
    execFileSync('ip', ['netns', 'add', orphan]);
    execFileSync('ip', ['netns', 'add', foreign]);
    try {
      sweepCli();
      const ns = listNetnsSync();
      assert.equal(ns.includes(orphan), false, 'orphan lab namespace removed');
      assert.equal(ns.includes(foreign), true, 'a namespace that is not a lab\'s is kept');
    } finally {
      execFileSync('ip', ['-force', 'netns', 'del', foreign]);
      if (listNetnsSync().includes(orphan)) execFileSync('ip', ['netns', 'del', orphan]);
    }
  });
});
