// The CPU wakeup-latency request of `canopy worker --cpu-latency-us`, on the real PM QoS device: it is
// in force while held, withdrawn on close, and released by the kernel when its holder dies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { CPU_LATENCY_DEVICE, currentCpuLatency, holdCpuLatency } from '../../native/cpu-latency.ts';
import { needRoot, unavailable } from '../support/facility.ts';

const skip = unavailable(needRoot() ?? (existsSync(CPU_LATENCY_DEVICE) ? null : `${CPU_LATENCY_DEVICE} missing`));

test('a held request is in force until it is closed', { skip }, () => {
  const before = currentCpuLatency();
  const r = holdCpuLatency(0);
  try {
    assert.equal(currentCpuLatency(), 0);
  } finally {
    r.close();
  }
  r.close();
  assert.equal(currentCpuLatency(), before);
});

test('the request of a process that is killed is released', { skip }, async () => {
  const before = currentCpuLatency();
  const code = `const fs = require('node:fs'); const fd = fs.openSync(${JSON.stringify(CPU_LATENCY_DEVICE)}, 'w');
    fs.writeSync(fd, Buffer.alloc(4)); process.stdout.write('held\\n'); setInterval(() => {}, 1000);`;
  const p = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      p.stdout.on('data', () => resolve());
      p.once('exit', (c) => reject(new Error(`holder exited ${c}`)));
    });
    assert.equal(currentCpuLatency(), 0);
  } finally {
    p.kill('SIGKILL');
    await new Promise((r) => p.once('exit', r));
  }
  assert.equal(currentCpuLatency(), before);
});

test('bad requests are refused with the reason', { skip }, () => {
  assert.throws(() => holdCpuLatency(-1), /integer number of µs/);
  assert.throws(() => holdCpuLatency(1.5), /integer number of µs/);
  assert.throws(() => holdCpuLatency(0, '/nonexistent/cpu_dma_latency'), /no PM QoS device/);
});
