// The PostgreSQL store's batching of calls that arrive together (orchestrator/root/pg-batch.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Batch } from '../../../orchestrator/root/pg-batch.ts';

test('calls made in one turn run as one batch and each gets its own answer, in order', async () => {
  const runs: number[][] = [];
  const b = new Batch<number, number>(async (xs) => {
    runs.push(xs);
    return xs.map((x) => x * 10);
  });
  assert.deepEqual(await Promise.all([b.call(1), b.call(2), b.call(3)]), [10, 20, 30]);
  assert.deepEqual(await b.call(4), 40);
  assert.deepEqual(runs, [[1, 2, 3], [4]], 'a later call is a batch of its own');
});

test('a batch is cut at its maximum size; a failed run fails every call in it and no other', async () => {
  const runs: number[][] = [];
  const b = new Batch<number, number>(async (xs) => {
    runs.push(xs);
    if (xs.includes(3)) throw new Error('statement failed');
    return xs;
  }, 2);
  const answers = await Promise.allSettled([b.call(1), b.call(2), b.call(3), b.call(4), b.call(5)]);
  assert.deepEqual(runs, [[1, 2], [3, 4], [5]]);
  assert.deepEqual(answers.map((a) => a.status), ['fulfilled', 'fulfilled', 'rejected', 'rejected', 'fulfilled']);
});
