// Partition end to end (SPEC §8): the cluster's host (with root) is cut off for 30 s by taking its
// link down. Instances keep serving on the routes their workers know; after healing, no instance was
// killed or duplicated (instance lists and pids compared before and after).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { Deployment, poll, sleep } from '../../harness/e2e-harness.ts';

interface WorkerStatus { connected: boolean; instances: Array<{ service_id: string; instance_n: number; state: string; pid: number | null }> }

test('partition: with the cluster cut off for 30 s instances keep serving, and nothing is killed or duplicated',
  { skip: unavailable(labSkipReason()), timeout: 170_000 }, async (t) => {
    const lab = await labFor(t, { hosts: ['ctl', 'w1', 'w2'] });
    const d = new Deployment(lab, { workers: ['w1', 'w2'] });
    t.after(() => d.stop());
    const status = async (h: string): Promise<WorkerStatus> => {
      return d.workerStatus<WorkerStatus>(h);
    };
    const snapshot = async (): Promise<string[]> => {
      const out: string[] = [];
      for (const h of ['w1', 'w2']) for (const i of (await status(h)).instances) out.push(`${h} ${i.service_id}/${i.instance_n} ${i.state} pid ${i.pid}`);
      return out.sort();
    };
    try {
      await d.start();
      const { srv, cli, c0 } = await d.deployWebClient(['w2'], 'w1');
      const get = async (url: string): Promise<string> => {
        const r = await d.inInstance(c0!.worker_id!, cli.microserviceID, 0, ['curl', '-sS', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', url], 8000);
        return r.code === 0 ? r.stdout : `curl ${r.code}: ${r.stderr.trim()}`;
      };
      const urls = ['http://10.30.30.30/', 'http://closest.web/'];
      for (const u of urls) await poll(`${u} before the partition`, async () => (await get(u)) === '200', 20_000);
      const before = await snapshot();
      assert.equal(before.length, 2, before.join('\n'));

      // Cut: the cluster host's link goes down for 30 s.
      await lab.host('ctl').execOk(['ip', 'link', 'set', 'eth0', 'down']);
      const cutAt = Date.now();
      const failures: string[] = [];
      let requests = 0;
      // Each worker must notice the broker gone (MQTT keepalive) during the cut, so that healing
      // really exercises its reconnect path rather than a session that never dropped.
      const sawGone = new Set<string>();
      while (Date.now() - cutAt < 30_000) {
        for (const u of urls) {
          requests++;
          const code = await get(u);
          if (code !== '200') failures.push(`${((Date.now() - cutAt) / 1000).toFixed(1)} s ${u}: ${code}`);
        }
        for (const h of ['w1', 'w2']) if (!(await status(h)).connected) sawGone.add(h);
        await sleep(1000);
      }
      t.diagnostic(`during the partition: ${requests} requests, ${failures.length} failed; workers that saw the cluster gone: ${[...sawGone].join(', ')}`);
      assert.deepEqual(failures, [], 'instances keep serving on known routes while the cluster is cut off');
      assert.deepEqual([...sawGone].sort(), ['w1', 'w2'], 'both workers saw the cluster gone during the cut');

      // Heal, then give the workers time to reconnect and the cluster time to reconcile.
      await lab.host('ctl').execOk(['ip', 'link', 'set', 'eth0', 'up']);
      await poll('workers reconnected', async () => (await Promise.all(['w1', 'w2'].map(async (h) => (await status(h)).connected))).every(Boolean), 30_000);
      await sleep(8000);
      const after = await snapshot();
      assert.deepEqual(after, before, 'same instances with the same pids after healing');
      for (const u of urls) assert.equal(await get(u), '200', `${u} after healing`);
      const atRoot = await poll('root sees both instances RUNNING', async () => {
        const a = await d.instances(srv.microserviceID);
        const b = await d.instances(cli.microserviceID);
        return a.length === 1 && b.length === 1 && a[0]!.state === 'RUNNING' && b[0]!.state === 'RUNNING' ? [...a, ...b] : undefined;
      }, 20_000);
      assert.equal(atRoot.length, 2, 'no duplicate instance at root');
    } catch (e) {
      for (const n of ['cluster', 'w1', 'w2']) t.diagnostic(`--- ${n} ---\n${d.output(n).slice(-5000)}`);
      throw e;
    }
  });
