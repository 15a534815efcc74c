// The default timers as shipped (SPEC §6–8: workers heartbeat every 1 s, clusters report to root every
// 5 s), with nothing overridden: root, a cluster and one worker started with their default flags. The
// test does not sleep and count; it records the events themselves (the cluster's receipt of each
// heartbeat, root's receipt of each report) and looks at the gaps between consecutive ones. The
// median gap is compared with a generous band around the promise, so a loaded machine that delays a
// timer now and then does not fail it while a wrong default (2 s, 10 s, or 0.5 s) does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { Deployment, sleep } from '../../harness/e2e-harness.ts';

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
};
const gaps = (ts: number[]): number[] => ts.slice(1).map((t, i) => t - ts[i]!);

test('default timers: a worker heartbeats every second and the cluster reports to root every 5 s',
  { skip: unavailable(labSkipReason()), timeout: 120_000 }, async (t) => {
    const lab = await labFor(t, { hosts: ['ctl', 'w1'], ipv6: false });
    const d = new Deployment(lab, { workers: ['w1'] });
    t.after(() => d.stop());
    await d.start();
    assert.equal(d.spec.rootArgs, undefined);
    assert.equal(d.spec.clusterArgs, undefined);

    const worker = d.workerIdOf('w1');
    const heartbeats: number[] = [];
    const reports: number[] = [];
    // Until 7 heartbeats and 7 reports have been seen (each poll only reads the latest of each). An
    // early report (a worker showing more room, which the host's free memory can do at any time)
    // splits one 5 s gap in two; with 5 gaps the median is still a periodic one.
    while (heartbeats.length < 7 || reports.length < 7) {
      const status = await d.clusterStatus<{ workers: Array<{ id: string; last_seen: number }> }>();
      const hb = status.workers.find((w) => w.id === worker)?.last_seen;
      if (hb && hb !== heartbeats.at(-1)) heartbeats.push(hb);
      const clusters = await d.api('GET', '/api/v1/clusters') as Array<{ name: string; last_seen: string | null }>;
      const seen = clusters.find((c) => c.name === 'c1')?.last_seen;
      const r = seen ? Date.parse(seen) : 0;
      if (r && r !== reports.at(-1)) reports.push(r);
      await sleep(100);
    }
    // The first of each may be an early one (a worker joining is reported at once): gaps after it.
    const hbGaps = gaps(heartbeats.slice(1));
    const reportGaps = gaps(reports.slice(1));
    t.diagnostic(`heartbeat gaps (ms): ${hbGaps.join(', ')}; report gaps (ms): ${reportGaps.join(', ')}`);
    assert.ok(median(hbGaps) >= 700 && median(hbGaps) <= 1600, `heartbeats every ~1 s: median gap ${median(hbGaps)} ms`);
    assert.ok(median(reportGaps) >= 4000 && median(reportGaps) <= 6500, `reports every ~5 s: median gap ${median(reportGaps)} ms`);
  });
