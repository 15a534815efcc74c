// 100 deploy/undeploy cycles of a process instance leave no namespaces, cgroups, processes or files.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectCgroups } from '../../orchestrator/worker/cgroup.ts';
import { processRuntimes } from '../../orchestrator/worker/process-runtime.ts';
import { Instance } from '../../orchestrator/worker/instance.ts';
import { NoNetwork } from '../../orchestrator/worker/net-seam.ts';
import { memoryLogger } from '../../orchestrator/protocol/log.ts';

const WORKER = `leak${process.pid}`;
const MARK = `${6000 + (process.pid % 1000)}.5`;
const stateDir = mkdtempSync(join(tmpdir(), 'canopy-leak-'));
const cgroups = detectCgroups();
const rt = processRuntimes({ workerId: WORKER, cgroups, stateDir });

function processesWithMark(): string[] {
  try {
    return execFileSync('pgrep', ['-f', `sleep ${MARK}`]).toString().trim().split('\n').filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

after(async () => {
  for (const k of await rt.leftovers()) await rt.remove(k).catch(() => {});
  await rt.close();
  rmSync(stateDir, { recursive: true, force: true });
});

test('100 deploy/undeploy cycles leave nothing behind', async () => {
  const log = memoryLogger();
  const cycles = 100;
  const undeployMs: number[] = [];
  const t0 = Date.now();
  for (let n = 0; n < cycles; n++) {
    const i = new Instance({
      service_id: 'leak', instance_n: n, name: { app: 'a', appns: 'b', svc: 'c', svcns: 'd' },
      spec: { virtualization: 'process', cmd: ['sh', '-c', `sleep ${MARK} & sleep ${MARK}`], memory: 16, vcpus: 0.1 },
    }, rt, new NoNetwork(), log);
    await i.start();
    assert.equal(i.state, 'RUNNING', JSON.stringify(i.lifecycle.history));
    const t = Date.now();
    await i.close();
    undeployMs.push(Date.now() - t);
    assert.equal(i.state, 'UNDEPLOYED');
  }
  undeployMs.sort((a, b) => a - b);
  console.log(`# ${cycles} cycles in ${Date.now() - t0} ms; undeploy p50 ${undeployMs[cycles >> 1]} ms, max ${undeployMs[cycles - 1]} ms`);
  const netns = execFileSync('ip', ['netns', 'list']).toString();
  assert.ok(!netns.includes(`canopy-${WORKER}-`), `namespaces left: ${netns}`);
  assert.deepEqual(cgroups.children(`canopy/${WORKER}`), [], 'cgroups left');
  assert.deepEqual(processesWithMark(), [], 'processes left');
  assert.deepEqual(existsSync(rt.sandbox.instancesDir) ? readdirSync(rt.sandbox.instancesDir) : [], [], 'instance directories left');
  assert.deepEqual(await rt.leftovers(), []);
});
