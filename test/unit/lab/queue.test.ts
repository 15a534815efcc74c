import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TimedQueue } from '../../../lab/impair/queue.ts';

test('frames leave in departure order, ties in arrival order', () => {
  const q = new TimedQueue<string>();
  q.push(30, 'c');
  q.push(10, 'a1');
  q.push(20, 'b');
  q.push(10, 'a2');
  q.push(10, 'a3');
  assert.equal(q.peekTime(), 10);
  const out: string[] = [];
  while (q.size > 0) out.push(q.pop());
  assert.deepEqual(out, ['a1', 'a2', 'a3', 'b', 'c']);
  assert.equal(q.peekTime(), Infinity);
});

test('a large random load comes out sorted and stable', () => {
  const q = new TimedQueue<{ t: number; i: number }>();
  let seed = 7;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  for (let i = 0; i < 2000; i++) {
    const t = Math.floor(rnd() * 50);
    q.push(t, { t, i });
  }
  let prev = { t: -1, i: -1 };
  while (q.size > 0) {
    const x = q.pop();
    assert.ok(x.t > prev.t || (x.t === prev.t && x.i > prev.i), `out of order: ${JSON.stringify(prev)} then ${JSON.stringify(x)}`);
    prev = x;
  }
});

test('pop on an empty queue throws', () => {
  assert.throws(() => new TimedQueue<number>().pop(), /empty/);
});
