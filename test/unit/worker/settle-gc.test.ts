import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { settleGc } from '../../../orchestrator/worker/settle-gc.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// The collection's timer does not hold a daemon open; these tests hold the loop open themselves.
const alive = setInterval(() => {}, 1000);
after(() => clearInterval(alive));

test('a burst of instance changes is followed by one full collection, once the burst is over', async () => {
  let collections = 0;
  let done!: () => void;
  const collected = new Promise<void>((r) => (done = r));
  const s = settleGc({ quietMs: 50, onCollect: () => { collections++; done(); } });
  for (let i = 0; i < 5; i++) {
    s.touch();
    await sleep(10);
  }
  assert.equal(collections, 0, 'nothing is collected while changes keep coming');
  await collected;
  await sleep(150);
  assert.equal(collections, 1, 'one collection for the whole burst');
  s.close();
});

test('the collection gives the garbage of the burst back: the V8 heap in use drops', async () => {
  let keep: unknown[] = [];
  // Garbage that survives long enough to be promoted, as a deploy's does while its `ip` runs.
  for (let r = 0; r < 50; r++) {
    keep.push(Array.from({ length: 5000 }, (_, i) => ({ i, s: `x${i}-${r}` })));
    if (keep.length > 10) keep.shift();
    await new Promise((res) => setImmediate(res));
  }
  keep = [];
  const before = process.memoryUsage().heapUsed;
  await new Promise<void>((r) => {
    const t = settleGc({ quietMs: 1, onCollect: () => r() });
    t.touch();
  });
  const after = process.memoryUsage().heapUsed;
  assert.ok(after < before - 5 * 1024 * 1024, `heap in use ${before} → ${after} bytes`);
});

test('close() cancels a pending collection', async () => {
  let collections = 0;
  const s = settleGc({ quietMs: 20, onCollect: () => collections++ });
  s.touch();
  s.close();
  await sleep(100);
  assert.equal(collections, 0);
});
