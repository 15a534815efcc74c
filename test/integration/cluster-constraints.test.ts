// Placement constraints through the real chain: a descriptor at root's REST API, root's offer to the
// cluster, the cluster's scheduler, a real worker. `connectivity` must survive the offer and show in
// the instance's reason; a `latency` location that the worker is too far from for the RTT makes the
// cluster decline, although root's coarse check lets the cluster's area through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InProcessStack, poll } from '../support/in-process-stack.ts';

const micro = (name: string, extra: Record<string, unknown>): Record<string, unknown> => ({
  microserviceID: '', microservice_name: name, microservice_namespace: 'test', virtualization: 'process',
  cmd: ['sleep', '600'], memory: 32, vcpus: 0.1, ...extra,
});

interface Instance { state: string; reason: string; history: Array<{ state: string; reason: string }> }

test('connectivity reaches the cluster scheduler; a latency location too far from the worker is declined with the distance', async () => {
  const st = new InProcessStack('canopy-cc-');
  try {
    const root = await st.startRoot();
    const r = root.url;
    // The cluster covers 100 km around Munich; its one worker sits about 7 km east of the centre.
    const cluster = await st.startCluster('edge1');
    await poll('registered with root', async () => cluster.rootToken);
    const engine = await st.startWorker(`wcon${process.pid % 100000}`);
    const workerId = engine.workerId;

    const auth = await st.adminHeaders();
    await poll('cluster active at root with a worker', async () => {
      const list = await (await fetch(`${r}/api/v1/clusters/active`, { headers: auth })).json() as Array<Record<string, unknown>>;
      const c = list.find((x) => x.name === 'edge1');
      return c && JSON.stringify(c).includes('"process"') ? c : undefined;
    });

    const sla = {
      sla_version: 'v2.0', customerID: 'Admin',
      applications: [{
        applicationID: '', application_name: 'cons', application_namespace: 'test', application_desc: 'constraints inside a cluster',
        microservices: [
          micro('db', {}),
          micro('web', { connectivity: [{ target_microservice_id: 'db', con_constraints: [{ type: 'latency', threshold: 5 }] }] }),
          micro('idle', {}),
          micro('lonely', { connectivity: [{ target_microservice_id: 'idle', con_constraints: [{ type: 'geo', threshold: 10 }] }] }),
          // 48.1,12.8 is ~97 km from the cluster's centre (inside its 100 km area, so root offers it)
          // and ~89 km from the worker: no RTT under 0.5 ms is possible from there.
          micro('edge', { constraints: [{ type: 'latency', location: '48.1,12.8', threshold: 0.5 }] }),
        ],
      }],
    };
    const created = await (await fetch(`${r}/api/v1/application`, { method: 'POST', headers: auth, body: JSON.stringify(sla) })).json() as { services: Array<{ microserviceID: string; microservice_name: string }> };
    const id = (name: string): string => created.services.find((s) => s.microservice_name === name)!.microserviceID;
    const deploy = async (name: string): Promise<void> => {
      const res = await fetch(`${r}/api/v1/service/${id(name)}/instance`, { method: 'POST', headers: auth, body: '{}' });
      assert.ok(res.ok, `instance of ${name}: HTTP ${res.status}`);
    };
    const instance = async (name: string): Promise<Instance | undefined> =>
      ((await (await fetch(`${r}/api/v1/service/${id(name)}`, { headers: auth })).json()) as { instances: Instance[] }).instances[0];
    const scheduledReason = (i: Instance): string => i.history.find((h) => h.state === 'NODE_SCHEDULED')?.reason ?? '';

    await deploy('db');
    await poll('db RUNNING', async () => (await instance('db'))?.state === 'RUNNING');

    await deploy('web');
    const web = await poll('web scheduled', async () => {
      const i = await instance('web');
      return i && scheduledReason(i) ? i : undefined;
    });
    assert.match(scheduledReason(web), new RegExp(`connectivity to ${id('db')} \\(latency ≤ 5 ms\\): met, ${workerId} runs an instance of it`));

    await deploy('lonely');
    const lonely = await poll('lonely scheduled', async () => {
      const i = await instance('lonely');
      return i && scheduledReason(i) ? i : undefined;
    });
    assert.match(scheduledReason(lonely), new RegExp(`connectivity to ${id('idle')} \\(geo ≤ 10 km\\): no instance of it in this cluster`));

    await deploy('edge');
    const edge = await poll('edge declined', async () => {
      const i = await instance('edge');
      return i?.state === 'NO_QUALIFIED_WORKER' ? i : undefined;
    });
    assert.match(edge.reason, new RegExp(`edge1 declined: NO_QUALIFIED_WORKER .*${workerId}: 8\\d km from 48\\.1,12\\.8: no RTT under 0\\.50 ms possible`));
    assert.equal(engine.instances.size, 3, 'db, web and lonely run; edge does not');
  } finally {
    await st.close({ undeploy: true });
  }
});
