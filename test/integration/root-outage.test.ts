// Root outage (SPEC §8: "Root unreachable → clusters keep their instances and routes; no state is lost
// across a root restart"). Only root dies (SIGKILL); the cluster and the workers stay up. While root
// is down, and until the cluster has seen its reports fail, a client keeps getting answers through
// the service's rr address and closest name, and no instance is killed or restarted (pids compared).
// Root then starts again on the same data: the cluster's reports reach it again, and root's view of
// the service is what it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { Deployment, poll } from '../../harness/e2e-harness.ts';

interface WorkerStatus { instances: Array<{ service_id: string; instance_n: number; state: string; pid: number | null }> }
interface ClusterStatus { counters: { reports_ok: number; reports_failed: number } }

test('root outage: with only root killed, instances keep running and serving; the cluster reports again once root is back',
  { skip: unavailable(labSkipReason()), timeout: 150_000 }, async (t) => {
    const lab = await labFor(t, { hosts: ['ctl', 'w1', 'w2'] });
    const d = new Deployment(lab, { workers: ['w1', 'w2'] });
    t.after(() => d.stop());
    const snapshot = async (): Promise<string[]> => {
      const out: string[] = [];
      for (const h of ['w1', 'w2']) {
        const s = await d.workerStatus<WorkerStatus>(h);
        for (const i of s.instances) out.push(`${h} ${i.service_id}/${i.instance_n} ${i.state} pid ${i.pid}`);
      }
      return out.sort();
    };
    const cluster = (): Promise<ClusterStatus> => d.clusterStatus<ClusterStatus>();
    try {
      await d.start();
      const { srv, cli, c0 } = await d.deployWebClient(['w2'], 'w1');
      const get = async (url: string): Promise<string> => {
        const r = await d.inInstance(c0.worker_id!, cli.microserviceID, 0, ['curl', '-sS', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', url], 8000);
        return r.code === 0 ? r.stdout : `curl ${r.code}: ${r.stderr.trim()}`;
      };
      const urls = ['http://10.30.30.30/', 'http://closest.web/'];
      for (const u of urls) await poll(`${u} before the outage`, async () => (await get(u)) === '200', 20_000);
      const before = await snapshot();
      assert.equal(before.length, 2, before.join('\n'));
      const rootBefore = (await d.instances(srv.microserviceID)).map((i) => `${i.instance_n} ${i.state} ${i.worker_id}`);

      await d.kill('root');
      const failedAtKill = (await cluster()).counters.reports_failed;
      // Requests go on until the cluster has failed to report to root twice (it knows root is gone).
      const failures: string[] = [];
      let requests = 0;
      for (;;) {
        for (const u of urls) {
          requests++;
          const code = await get(u);
          if (code !== '200') failures.push(`${u}: ${code}`);
        }
        if ((await cluster()).counters.reports_failed >= failedAtKill + 2) break;
      }
      t.diagnostic(`${requests} requests while root was down`);
      assert.deepEqual(failures, [], 'every request while root was down was answered');
      assert.deepEqual(await snapshot(), before, 'no instance was killed, restarted or added while root was down');

      const okBefore = (await cluster()).counters.reports_ok;
      const restartedAt = Date.now();
      await d.startRoot();
      await d.login();
      await poll('the cluster reports to root again', async () => (await cluster()).counters.reports_ok > okBefore, 30_000);
      const seen = await poll('root has heard from the cluster since its restart', async () => {
        const list = await d.api('GET', '/api/v1/clusters') as Array<{ name: string; last_seen: string | null; status?: string }>;
        const c = list.find((x) => x.name === 'c1');
        return c?.last_seen && Date.parse(c.last_seen) >= restartedAt ? c : undefined;
      }, 30_000);
      t.diagnostic(`root after restart: ${JSON.stringify(seen)}`);
      const rootAfter = (await d.instances(srv.microserviceID)).map((i) => `${i.instance_n} ${i.state} ${i.worker_id}`);
      assert.deepEqual(rootAfter, rootBefore, 'root\'s view of the service survived its restart');
      assert.deepEqual(await snapshot(), before, 'and still nothing was killed or duplicated');
      for (const u of urls) assert.equal(await get(u), '200', `${u} after root is back`);
    } catch (e) {
      for (const n of ['root', 'cluster', 'w1', 'w2']) t.diagnostic(`--- ${n} ---\n${d.output(n).slice(-3000)}`);
      throw e;
    }
  });
