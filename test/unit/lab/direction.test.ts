import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Clock, Direction, Stage, pairStages } from '../../../lab/impair/direction.ts';
import { arpFrame, ipv4Frame, ipv6Frame, v6 } from './frames.ts';

/** A clock whose time only moves when the test says so, with one-shot timers. */
class FakeClock implements Clock {
  t = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private next = 1;
  now(): number { return this.t; }
  setTimer(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimer(h: unknown): void { this.timers.delete(h as number); }
  get pending(): number { return this.timers.size; }
  advance(to: number): void {
    for (;;) {
      const due = [...this.timers.entries()].filter(([, x]) => x.at <= to).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
    }
    this.t = to;
  }
}

function rig(opts: { link?: ConstructorParameters<typeof Stage>[0]; pairs?: Parameters<typeof pairStages>[0]; side?: 'src' | 'dst'; random?: () => number; limit?: number; leadMs?: number; slackMs?: number }) {
  const clock = new FakeClock();
  const out: { t: number; tag: number }[] = [];
  const d = new Direction({
    link: opts.link ? new Stage(opts.link, 1500) : null,
    pairs: pairStages(opts.pairs ?? [], 1500),
    side: opts.side ?? 'dst',
    clock,
    random: opts.random,
    limit: opts.limit,
    leadMs: opts.leadMs,
    slackMs: opts.slackMs,
    // The last byte of each test frame is its tag.
    write: (f, n) => { out.push({ t: clock.t, tag: f[n - 1]! }); return true; },
  });
  return { clock, out, d };
}

function tagged(f: Uint8Array, tag: number): Uint8Array {
  const g = new Uint8Array(f.length + 1);
  g.set(f);
  g[f.length] = tag;
  return g;
}

const toW2 = (tag: number): Uint8Array => tagged(ipv4Frame([198, 18, 0, 1], [198, 18, 0, 2]), tag);
const toW3 = (tag: number): Uint8Array => tagged(ipv4Frame([198, 18, 0, 1], [198, 18, 0, 3]), tag);

test('without impairment frames pass at once and nothing is queued', () => {
  const { out, d, clock } = rig({});
  d.onFrame(toW2(1), toW2(1).length);
  assert.deepEqual(out, [{ t: 0, tag: 1 }]);
  assert.equal(clock.pending, 0);
  assert.equal(d.stats.forwarded, 1);
});

test('a link delay holds every frame that long, in order, with one timer', () => {
  const { out, d, clock } = rig({ link: { delayMs: 20 } });
  for (let i = 0; i < 5; i++) {
    clock.advance(i);
    const f = toW2(i);
    d.onFrame(f, f.length);
    f.fill(0); // the buffer is borrowed: the relay reuses it for the next read
  }
  assert.equal(clock.pending, 1, 'one timer for the whole queue');
  assert.equal(out.length, 0);
  clock.advance(100);
  assert.deepEqual(out, [0, 1, 2, 3, 4].map((i) => ({ t: 20 + i, tag: i })));
  assert.equal(d.stats.queued, 0);
});

test('a pair rule delays only frames to that peer (dst on egress)', () => {
  const { out, d, clock } = rig({ pairs: [{ addrs: ['198.18.0.2', '2001:2::2'], impairment: { delayMs: 20 } }] });
  d.onFrame(toW2(1), toW2(1).length);
  d.onFrame(toW3(2), toW3(2).length);
  const v6f = tagged(ipv6Frame(v6(1), v6(2)), 3);
  d.onFrame(v6f, v6f.length);
  const arp = tagged(arpFrame(), 4);
  d.onFrame(arp, arp.length);
  clock.advance(50);
  // The unmatched frame and ARP pass before the delayed ones, as on a real link to a nearer host.
  assert.deepEqual(out, [{ t: 0, tag: 2 }, { t: 0, tag: 4 }, { t: 20, tag: 1 }, { t: 20, tag: 3 }]);
});

test('on ingress the pair rule matches the source address', () => {
  const { out, d, clock } = rig({ side: 'src', pairs: [{ addrs: ['198.18.0.2'], impairment: { delayMs: 10 } }] });
  const fromW2 = tagged(ipv4Frame([198, 18, 0, 2], [198, 18, 0, 1]), 1);
  const toW2f = toW2(2); // destination w2, source w1: not matched on ingress
  d.onFrame(fromW2, fromW2.length);
  d.onFrame(toW2f, toW2f.length);
  clock.advance(20);
  assert.deepEqual(out, [{ t: 0, tag: 2 }, { t: 10, tag: 1 }]);
});

test('link and pair impairments add up', () => {
  const { out, d, clock } = rig({ link: { delayMs: 5 }, pairs: [{ addrs: ['198.18.0.2'], impairment: { delayMs: 20 } }] });
  d.onFrame(toW2(1), toW2(1).length);
  d.onFrame(toW3(2), toW3(2).length);
  clock.advance(100);
  assert.deepEqual(out, [{ t: 5, tag: 2 }, { t: 25, tag: 1 }]);
});

test('loss drops the frames the random source picks and counts them', () => {
  const draws = [0.5, 0.01, 0.9, 0.04, 0.05];
  const { out, d } = rig({ link: { lossPct: 5 }, random: () => draws.shift()! });
  for (let i = 0; i < 5; i++) d.onFrame(toW2(i), toW2(i).length);
  assert.deepEqual(out.map((o) => o.tag), [0, 2, 4]);
  assert.equal(d.stats.droppedLoss, 2);
  assert.equal(d.stats.forwarded, 3);
});

test('jitter reorders frames like netem, each within delay ± jitter', () => {
  const draws = [1, 0]; // first frame +10 ms, second −10 ms
  const { out, d, clock } = rig({ link: { delayMs: 20, jitterMs: 10 }, random: () => draws.shift()! });
  d.onFrame(toW2(1), toW2(1).length);
  clock.advance(1);
  d.onFrame(toW2(2), toW2(2).length);
  clock.advance(100);
  assert.deepEqual(out, [{ t: 11, tag: 2 }, { t: 30, tag: 1 }]);
});

test('rate spaces frames and drops what would wait too long', () => {
  // 1.2 Mbit/s = 150 bytes per ms; the default bucket holds 2 full frames and allows 100 ms backlog.
  const { out, d, clock } = rig({ link: { rateMbit: 1.2 } });
  const big = tagged(new Uint8Array(1499).fill(0), 0);
  big[12] = 0x08; // IPv4 ethertype, contents irrelevant to rate
  for (let i = 0; i < 20; i++) { big[1499] = i; d.onFrame(big, big.length); }
  clock.advance(1000);
  assert.ok(d.stats.droppedRate > 0, 'some frames dropped by rate');
  assert.equal(d.stats.forwarded + d.stats.droppedRate, 20);
  for (let i = 1; i < out.length; i++) assert.ok(out[i]!.t >= out[i - 1]!.t);
  const spacing = out[out.length - 1]!.t - out[out.length - 2]!.t;
  assert.ok(Math.abs(spacing - 10) < 1e-6, `1500 bytes at 150 B/ms leave 10 ms apart, got ${spacing}`);
});

test('a full queue drops instead of growing without bound', () => {
  const { out, d, clock } = rig({ link: { delayMs: 10 }, limit: 3 });
  for (let i = 0; i < 5; i++) d.onFrame(toW2(i), toW2(i).length);
  assert.equal(d.stats.droppedQueue, 2);
  clock.advance(20);
  assert.deepEqual(out.map((o) => o.tag), [0, 1, 2]);
});

test('close stops the timer and discards waiting frames', () => {
  const { out, d, clock } = rig({ link: { delayMs: 10 } });
  d.onFrame(toW2(1), toW2(1).length);
  d.close();
  assert.equal(clock.pending, 0);
  clock.advance(20);
  assert.equal(out.length, 0);
});

test('a timer armed early releases only what is due within the slack, then re-arms', () => {
  const { out, d, clock } = rig({ link: { delayMs: 20 }, leadMs: 1, slackMs: 0.5 });
  d.onFrame(toW2(1), toW2(1).length);
  clock.advance(19); // the timer fires 1 ms early: 1 ms is more than the slack, nothing leaves yet
  assert.equal(out.length, 0);
  assert.equal(clock.pending, 1, 're-armed for the rest');
  clock.advance(20);
  assert.deepEqual(out, [{ t: 20, tag: 1 }]);
});
