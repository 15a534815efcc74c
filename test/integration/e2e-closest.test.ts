// `closest` end to end: the worker daemons' tunnel probes measure RTT, and new flows to a service's
// closest address go to the instance on the nearer worker. w1 (client) reaches w3 over a link with
// 25 ms of delay each way and w2 directly; the server runs on w2 and w3. Requests to the closest
// address must all land on w2, requests to the rr address on both (seen in each worker's datapath
// counters of packets delivered from the tunnel). Then the near instance is overloaded for real (a
// busy loop joins its cgroup, so the kernel throttles it at its 0.25 vcpus): its worker reports it,
// the cluster marks it unhealthy in the route, and closest flows go to the far instance until the loop
// stops and the near one recovers (SPEC §5.3).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { Deployment, poll, sleep } from '../../harness/e2e-harness.ts';
import { SLA_FIXTURES as FIXTURES } from '../../harness/fixtures.ts';

/** The cgroup.procs files of an instance's group in every hierarchy that has it (v2, or each v1 controller). */
function instanceProcsFiles(workerId: string, serviceId: string, n: number): string[] {
  const rel = join('canopy', workerId, `${serviceId.replace(/[^A-Za-z0-9_.-]/g, '_')}-${n}`, 'cgroup.procs');
  const roots = ['/sys/fs/cgroup', ...readdirSync('/sys/fs/cgroup', { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join('/sys/fs/cgroup', e.name))];
  return roots.map((r) => join(r, rel)).filter((f) => existsSync(f));
}

/** A CPU-bound loop that first moves itself into the given groups (so their quota throttles it). */
function busyLoopIn(procsFiles: readonly string[]): ChildProcess {
  const join1 = procsFiles.map((f) => `echo $$ > '${f}'`).join(' && ');
  return spawn('sh', ['-c', `${join1} && exec sh -c 'while :; do :; done'`], { stdio: 'ignore' });
}

test('e2e closest: the nearer worker by measured RTT gets the closest address\'s flows; rr spreads them; an overloaded near instance loses them until it recovers',
  { skip: unavailable(labSkipReason()), timeout: 240_000 }, async (t) => {
    const lab = await labFor(t, { hosts: ['ctl', 'w1', 'w2', 'w3'], links: [{ a: 'w1', b: 'w3', delayMs: 25 }] });
    const d = new Deployment(lab, { workers: ['w1', 'w2', 'w3'] });
    t.after(() => d.stop());
    const rxFromTunnel = async (h: string): Promise<number> => {
      const m = await lab.host(h).execOk(['curl', '-sS', 'http://127.0.0.1:10200/metrics']);
      return Number(/^canopy_datapath_tunnel_rx_batches (\d+)/m.exec(m)?.[1] ?? 0);
    };
    try {
      await d.start();
      const sla = JSON.parse(readFileSync(join(FIXTURES, 'process-web-client.json'), 'utf8')) as {
        applications: Array<{ microservices: Array<Record<string, unknown>> }>;
      };
      const [web, client] = sla.applications[0]!.microservices;
      web!.constraints = [{ type: 'direct', node: `${d.workerIdOf('w2')};${d.workerIdOf('w3')}` }, { type: 'anti_affinity' }];
      client!.constraints = [{ type: 'direct', node: d.workerIdOf('w1') }];
      const app = await d.submit(JSON.stringify(sla));
      const srv = app.services.find((s) => s.microservice_name === 'web')!;
      const cli = app.services.find((s) => s.microservice_name === 'client')!;
      await d.deployInstance(srv.microserviceID);
      await d.deployInstance(srv.microserviceID);
      await d.deployInstance(cli.microserviceID);
      await d.waitState(srv.microserviceID, 2, ['RUNNING']);
      const [c0] = await d.waitState(cli.microserviceID, 1, ['RUNNING']);
      const get = async (url: string): Promise<boolean> => {
        const r = await d.inInstance(c0!.worker_id!, cli.microserviceID, 0, ['curl', '-sS', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', url], 8000);
        return r.stdout === '200';
      };
      await poll('closest address answers', () => get('http://10.30.30.31/'), 20_000);
      await sleep(3000); // a few probe rounds (1 s apart) after the route named both peers
      // The client's own loop (curl closest.web every second) keeps running meanwhile; its flows
      // follow the same rule, so they do not disturb the comparison.
      const before = { w2: await rxFromTunnel('w2'), w3: await rxFromTunnel('w3') };
      for (let i = 0; i < 10; i++) assert.ok(await get('http://10.30.30.31/'), `closest request ${i}`);
      const mid = { w2: await rxFromTunnel('w2'), w3: await rxFromTunnel('w3') };
      for (let i = 0; i < 10; i++) assert.ok(await get('http://10.30.30.30/'), `rr request ${i}`);
      const after = { w2: await rxFromTunnel('w2'), w3: await rxFromTunnel('w3') };
      const closest = { w2: mid.w2 - before.w2, w3: mid.w3 - before.w3 };
      const rr = { w2: after.w2 - mid.w2, w3: after.w3 - mid.w3 };
      t.diagnostic(`tunnel batches received — closest: ${JSON.stringify(closest)}, rr: ${JSON.stringify(rr)}`);
      assert.ok(closest.w2 >= 30, `the near worker served the closest flows: ${JSON.stringify(closest)}`);
      assert.ok(closest.w3 < closest.w2 / 5, `the far worker got (almost) none: ${JSON.stringify(closest)}`);
      assert.ok(rr.w2 > 0 && rr.w3 > 0, `rr used both: ${JSON.stringify(rr)}`);

      // ---- overload the near instance (w2's) for real ----
      const w2 = d.workerIdOf('w2');
      const near = (await d.instances(srv.microserviceID)).find((i) => i.worker_id === w2)!;
      type Status = { instances: Array<{ service_id: string; instance_n: number; overloaded?: boolean; reason: string }> };
      const nearStatus = async (): Promise<Status['instances'][number] | undefined> =>
        (await d.clusterStatus<Status>()).instances.find((i) => i.service_id === srv.microserviceID && i.instance_n === near.instance_n);
      const files = instanceProcsFiles(w2, srv.microserviceID, near.instance_n);
      assert.ok(files.length > 0, 'the near instance has a cgroup');
      let busy: ChildProcess | undefined = busyLoopIn(files);
      t.after(() => busy?.kill('SIGKILL'));
      // Counts the tunnel batches each server worker receives over `k` closest requests.
      const measure = async (k: number): Promise<{ w2: number; w3: number }> => {
        const b = { w2: await rxFromTunnel('w2'), w3: await rxFromTunnel('w3') };
        for (let i = 0; i < k; i++) assert.ok(await get('http://10.30.30.31/'), `closest request ${i}`);
        return { w2: (await rxFromTunnel('w2')) - b.w2, w3: (await rxFromTunnel('w3')) - b.w3 };
      };
      await poll('the cluster reports the near instance overloaded', async () => (await nearStatus())?.overloaded === true, 30_000);
      const hot = await nearStatus();
      assert.match(hot!.reason, /^overloaded: CPU throttled/, 'status says why');
      await poll('closest flows leave the overloaded instance', async () => { const m = await measure(2); return m.w3 > m.w2; }, 20_000);
      const during = await measure(10);
      t.diagnostic(`tunnel batches received while w2's instance is overloaded: ${JSON.stringify(during)}`);
      assert.ok(during.w3 >= 30, `the far worker served the closest flows: ${JSON.stringify(during)}`);
      assert.ok(during.w2 < during.w3 / 5, `the overloaded near worker got (almost) none: ${JSON.stringify(during)}`);

      // ---- it recovers ----
      busy.kill('SIGKILL');
      busy = undefined;
      await poll('the cluster reports the near instance recovered', async () => (await nearStatus())?.overloaded === false, 30_000);
      await poll('closest flows come back', async () => { const m = await measure(2); return m.w2 > m.w3; }, 20_000);
      const back = await measure(10);
      t.diagnostic(`tunnel batches received after recovery: ${JSON.stringify(back)}`);
      assert.ok(back.w2 >= 30, `the near worker serves the closest flows again: ${JSON.stringify(back)}`);
      assert.ok(back.w3 < back.w2 / 5, `the far worker got (almost) none: ${JSON.stringify(back)}`);
    } catch (e) {
      for (const n of ['cluster', 'w1', 'w2', 'w3']) t.diagnostic(`--- ${n} ---\n${d.output(n).slice(-4000)}`);
      throw e;
    }
  });
