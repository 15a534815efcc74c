// Thread affinity and the CPU mask text of rps_cpus; no root needed (steering itself is covered by
// the datapath lab test, which writes sysfs in a namespace of its own).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { allowedCpus, cpuMaskText } from '../../../native/cpu.ts';
import { placeDatapath } from '../../../netstack/placement.ts';

const allowedOf = (status: string): string => /Cpus_allowed_list:\s+(\S+)/.exec(status)?.[1] ?? '?';

test('cpu mask text is what rps_cpus takes: 32-bit hex words, most significant first', () => {
  assert.equal(cpuMaskText([]), '0');
  assert.equal(cpuMaskText([0]), '1');
  assert.equal(cpuMaskText([1, 2]), '6');
  assert.equal(cpuMaskText([31]), '80000000');
  assert.equal(cpuMaskText([0, 33]), '2,00000001');
  assert.equal(cpuMaskText([64]), '1,00000000,00000000');
  assert.throws(() => cpuMaskText([-1]), /not a CPU number/);
});

test('the CPUs this thread may use include one it runs on', () => {
  const cpus = allowedCpus();
  assert.ok(cpus.length >= 1);
  assert.deepEqual(cpus, [...cpus].sort((a, b) => a - b));
});

test('placing a datapath pins only the calling thread', async () => {
  const cpus = allowedCpus();
  const cpu = cpus[cpus.length - 1];
  const mainBefore = allowedOf(readFileSync('/proc/thread-self/status', 'utf8'));
  // A worker thread stands in for the loop's thread; the device name does not exist, so steering
  // fails and says why, while the pin holds.
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import('tsx/esm/api').then((t) => { t.register(); return import(workerData.mod); }).then(({ placeDatapath }) => {
      const p = placeDatapath('canopy-none0', workerData.cpu);
      const status = require('node:fs').readFileSync('/proc/thread-self/status', 'utf8');
      parentPort.postMessage({ p, status });
    }).catch((e) => parentPort.postMessage({ error: String(e) }));`;
  const w = new Worker(code, { eval: true, workerData: { mod: new URL('../../../netstack/placement.ts', import.meta.url).href, cpu } });
  const msg = await new Promise<{ p?: { cpu: number; steered: number[]; steerError?: string }; status?: string; error?: string }>((res, rej) => {
    w.once('message', res);
    w.once('error', rej);
  });
  await w.terminate();
  assert.equal(msg.error, undefined);
  assert.equal(msg.p?.cpu, cpu);
  assert.equal(allowedOf(msg.status ?? ''), String(cpu));
  if (cpus.length > 1) assert.match(msg.p?.steerError ?? '', /canopy-none0/);
  assert.equal(allowedOf(readFileSync('/proc/thread-self/status', 'utf8')), mainBefore, 'the main thread is untouched');
});

test('a CPU the process may not use is refused before anything is pinned', () => {
  assert.throws(() => placeDatapath('canopy-none0', 4000), /not one this process may run on/);
});
