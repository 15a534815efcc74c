// The gateway an instance talks to (the worker's bridge) keeps one MAC while other instances come
// and go. A Linux bridge without an address of its own takes the lowest MAC among its ports; when that
// port's instance was undeployed, every instance that had learned the gateway's MAC sent its frames to
// a MAC that no longer existed, and all its overlay flows hung until the neighbour entry was
// re-resolved (tens of seconds: seen as "a new service's rr address never answers" in the e2e).
// The test forces that case: an instance whose veth has the lowest possible MAC, a client that learns
// the gateway's MAC while it is there, then that instance is undeployed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { Deployment, poll } from '../../harness/e2e-harness.ts';
import { SLA_FIXTURES as FIXTURES } from '../../harness/fixtures.ts';
import { vethName } from '../../orchestrator/worker/net/net-manager.ts';

test('gateway MAC: a client keeps reaching services right after an instance with the lowest MAC leaves its worker',
  { skip: unavailable(labSkipReason()), timeout: 150_000 }, async (t) => {
    const lab = await labFor(t, { hosts: ['ctl', 'w1'] });
    const d = new Deployment(lab, { workers: ['w1'] });
    t.after(() => d.stop());
    const w1 = lab.host('w1');
    await d.start();
    const { cli, c0, srv } = await d.deployWebClient(['w1'], 'w1');
    const wid = c0.worker_id!;
    const cns = d.netnsOf(wid, cli.microserviceID, 0);
    const rr = String((await d.service(srv.microserviceID)).rr_ip);
    const get = async (): Promise<string> => {
      const r = await d.inInstance(wid, cli.microserviceID, 0, ['curl', '-sS', '-m', '2', '-o', '/dev/null', '-w', '%{http_code}', `http://${rr}/`], 6000);
      return r.code === 0 ? r.stdout : `curl exit ${r.code}`;
    };
    await poll('client reaches the rr address', async () => (await get()) === '200', 20_000);
    const gw = /default via (\S+)/.exec(await w1.execOk(['ip', '-n', cns, '-4', 'route', 'show', 'default']))?.[1];
    assert.ok(gw, 'the client has a default route');
    const gatewayMac = async (): Promise<string> => {
      await w1.exec(['ip', 'netns', 'exec', cns, 'ping', '-c', '1', '-W', '2', gw]);
      return /lladdr (\S+)/.exec(await w1.execOk(['ip', '-n', cns, 'neigh', 'show', gw]))?.[1] ?? '';
    };
    const before = await gatewayMac();
    assert.match(before, /^[0-9a-f:]{17}$/, 'the client resolved its gateway');

    // Another service's instance on the same worker, its veth given the lowest MAC there is.
    const sla = JSON.parse(readFileSync(join(FIXTURES, 'stress-zero-request.json'), 'utf8')) as {
      applications: Array<{ microservices: Array<Record<string, unknown>> }>;
    };
    sla.applications[0]!.microservices[0]!.constraints = [{ type: 'direct', node: wid }];
    const other = await d.submit(JSON.stringify(sla));
    const o = other.services[0]!;
    await d.deployInstance(o.microserviceID);
    await d.waitState(o.microserviceID, 1, ['RUNNING']);
    const veth = vethName(`${o.microserviceID}-0`);
    await w1.execOk(['ip', 'link', 'set', 'dev', veth, 'address', '00:00:00:00:00:01']);
    // The client learns the gateway's MAC now (as any instance does when its entry expires).
    await w1.execOk(['ip', '-n', cns, 'neigh', 'flush', 'dev', 'eth0']);
    const during = await gatewayMac();

    await d.api('DELETE', `/api/v1/application/${other.applicationID}`);
    await poll('the other instance\'s veth is gone', async () => (await w1.exec(['ip', 'link', 'show', veth])).code !== 0, 20_000);
    // Right away, not after a neighbour re-resolution: two tries of two seconds.
    const after = [await get()];
    if (after[0] !== '200') after.push(await get());
    assert.equal(after.at(-1), '200', `rr ${rr} from the client right after the undeploy: ${after.join(', ')} (gateway MAC ${before}, then ${during})`);
    assert.equal(during, before, 'the gateway MAC does not follow a new port with a lower MAC');
    assert.equal(await gatewayMac(), before, 'the gateway MAC is unchanged after the undeploy');
  });
