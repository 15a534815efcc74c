// Two clusters under one root (SPEC §2, §5.4): a client on a worker of cluster c1 reaches a server on
// a worker of cluster c2 through the service's rr address. Root resolves the route across clusters;
// the datagrams are authenticated with root's overlay key, which both clusters hand their workers, and
// the server's worker admits the caller's worker from the peers root pushes as soon as the client
// runs. The clusters' periodic reports are set to 60 s and the client starts when the server already
// runs, so only the event-driven path (an early report from c1, root's POST api/peers to c2) can
// admit the client within the 15 s the test allows. Both workers are named alike: names are unique
// per cluster only, so each cluster's workers see the other cluster's as `name@cluster`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { Deployment, poll, type InstanceInfo } from '../../harness/e2e-harness.ts';
import { NodeEngine } from '../../orchestrator/worker/node-engine.ts';
import type { TunnelKey } from '../../orchestrator/protocol/tunnel-identity.ts';
import { InProcessStack } from '../support/in-process-stack.ts';

/** Periodic reports far apart: what the test sees within ADMIT_BOUND_MS cannot have come from them. */
const REPORT_INTERVAL_MS = 60_000;
const ADMIT_BOUND_MS = 15_000;

/** When the instance went RUNNING, by its cluster's clock (the history root keeps). */
function runningSince(i: InstanceInfo): number {
  const h = (i.history as Array<{ state: string; ts: string }> | undefined)?.findLast((e) => e.state === 'RUNNING');
  assert.ok(h, `instance ${i.instance_n} has a RUNNING event`);
  return Date.parse(h.ts);
}

test('e2e two clusters: a client in c1 reaches a server in c2 through its rr address over the overlay, within seconds of starting',
  { skip: unavailable(labSkipReason()), timeout: 180_000 }, async (t) => {
    const lab = await labFor(t, { hosts: ['ctl', 'w1', 'w2'] });
    const d = new Deployment(lab, {
      workers: ['w1', 'w2'], clusters: [{ name: 'c1', workers: ['w1'] }, { name: 'c2', workers: ['w2'] }],
      // One worker name in both clusters (names are unique per cluster only): the client's worker
      // must take the server's for a remote worker, not for itself.
      names: { w1: 'edge', w2: 'edge' },
      clusterArgs: ['--report-interval', String(REPORT_INTERVAL_MS)],
      // Root must not take the quiet clusters for dead between their reports.
      rootArgs: ['--cluster-silence', String(10 * REPORT_INTERVAL_MS)],
    });
    t.after(() => d.stop());
    const w2 = lab.host('w2');
    const rxBatches = async (): Promise<number> => {
      const m = await w2.execOk(['curl', '-sS', '-m', '3', 'http://127.0.0.1:10200/metrics']);
      return Number(/^canopy_datapath_tunnel_rx_batches (\d+)/m.exec(m)?.[1] ?? 'NaN');
    };
    try {
      await d.start();
      // The client comes to a server that already runs: c2 has nothing to report when the client
      // starts, so only root's push can tell it about the client's worker.
      const { srv, cli, s0, c0 } = await d.deployWebClient(['w2'], 'w1', { clientAfterWeb: true });
      // Where things really are, from each daemon's own view (not from the names this test gave).
      type Running = { worker_id: string; instances: Array<{ service_id: string; state: string }> };
      const onWorker = (h: string): Promise<Running> => d.workerStatus<Running>(h);
      const inCluster = async (i: number): Promise<Array<{ service_id: string; worker: string | null; state: string }>> =>
        (await d.clusterStatus<{ instances: Array<{ service_id: string; worker: string | null; state: string }> }>(i)).instances;
      const [st1, st2] = [await onWorker('w1'), await onWorker('w2')];
      const runs = (st: Running, sid: string): boolean => st.instances.some((i) => i.service_id === sid && i.state === 'RUNNING');
      assert.ok(runs(st2, srv.microserviceID) && !runs(st1, srv.microserviceID), 'the server runs on w2\'s daemon, not on w1\'s');
      assert.ok(runs(st1, cli.microserviceID) && !runs(st2, cli.microserviceID), 'the client runs on w1\'s daemon, not on w2\'s');
      assert.equal(st1.worker_id, st2.worker_id, 'the two daemons were admitted under one name, each by its own cluster');
      assert.equal(s0.worker_id, st2.worker_id, 'root names the server\'s worker as w2\'s daemon calls itself');
      const [c1Has, c2Has] = [await inCluster(0), await inCluster(1)];
      assert.ok(c2Has.some((i) => i.service_id === srv.microserviceID && i.state === 'RUNNING') && !c1Has.some((i) => i.service_id === srv.microserviceID),
        'cluster c2 holds the server, c1 does not');
      assert.ok(c1Has.some((i) => i.service_id === cli.microserviceID && i.state === 'RUNNING') && !c2Has.some((i) => i.service_id === cli.microserviceID),
        'cluster c1 holds the client, c2 does not');
      assert.equal(s0.cluster_name, 'c2', 'root: server placed by cluster c2');
      assert.equal(c0.cluster_name, 'c1', 'root: client placed by cluster c1');

      const rr = (await d.service(srv.microserviceID)).rr_ip as string | undefined;
      assert.ok(rr, 'the server has an rr address');
      const rx0 = await rxBatches();
      const get = async (): Promise<boolean> => {
        const r = await d.inInstance(c0.worker_id!, cli.microserviceID, 0,
          ['curl', '-sS', '-m', '2', '-o', '/dev/null', '-w', '%{http_code}', `http://${rr}/`], 6000, 'c1');
        return r.stdout === '200';
      };
      const since = runningSince(c0);
      assert.ok(runningSince(s0) <= since, 'the server ran before the client');
      await poll(`client in c1 reaches http://${rr}/ in c2 within ${ADMIT_BOUND_MS / 1000} s of running (periodic reports every ${REPORT_INTERVAL_MS / 1000} s)`,
        get, since + ADMIT_BOUND_MS - Date.now(), 250);
      t.diagnostic(`client RUNNING → first HTTP 200 through the rr address in c2: ${Date.now() - since} ms`);
      const rx1 = await rxBatches();
      assert.ok(rx1 > rx0, `tunnel batches arrived at w2: ${rx0} → ${rx1}`);
      for (const h of ['w1', 'w2']) {
        const m = await lab.host(h).execOk(['curl', '-sS', '-m', '3', 'http://127.0.0.1:10200/metrics']);
        assert.match(m, /^canopy_tunnel_send_key_id 128$/m, `${h} sends with root's overlay key`);
      }
    } catch (e) {
      for (const n of ['root', 'cluster', 'cluster-c2', 'w1', 'w2']) t.diagnostic(`--- ${n} ---\n${d.output(n).slice(-5000)}`);
      throw e;
    }
  });

test('a worker admitted while root was unreachable learns root\'s overlay key later, and keeps it', { timeout: 60_000 }, async () => {
  const st = new InProcessStack('canopy-ok-');
  try {
    // The cluster is pointed at root's address before root runs.
    await st.startCluster('late', { reportIntervalMs: 300 });
    const engine = await st.startWorker(`wlate${process.pid % 100000}`, { location: null, capacity: { vcpus: 1, memory_mb: 512 } });
    assert.ok(engine.identity.tunnel, 'the cluster key comes with admission');
    assert.equal(engine.identity.overlay_tunnel, undefined, 'no overlay key while root is unreachable');
    // Bounded below the test's timeout, so that the finally below still cleans up on a failure.
    const learned = new Promise<TunnelKey>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the worker never learned the overlay key')), 30_000);
      engine.once('overlay-key', (k) => {
        clearTimeout(timer);
        resolve(k);
      });
    });
    learned.catch(() => {}); // awaited below; not an unhandled rejection if root fails to start first

    await st.startRoot();
    const k = await learned;
    assert.equal(k.key_id, 128);
    assert.notEqual(k.key, engine.identity.tunnel.key);
    const saved = JSON.parse(readFileSync(NodeEngine.identityFile(join(st.dir, 'worker')), 'utf8')) as { overlay_tunnel?: TunnelKey };
    assert.deepEqual(saved.overlay_tunnel, k, 'kept in worker.json for the next start');
    await poll('kept in cluster.json', async () => {
      const saved = JSON.parse(readFileSync(join(st.dir, 'cluster', 'cluster.json'), 'utf8')) as { overlay_tunnel?: TunnelKey };
      return JSON.stringify(saved.overlay_tunnel) === JSON.stringify(k);
    }, 5000);
  } finally {
    await st.close();
  }
});
