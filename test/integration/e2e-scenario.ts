// The end-to-end scenario (e2e.test.ts, e2e-mosquitto.test.ts): root and cluster on `ctl`, three
// worker daemons with their net managers on w1..w3, all real processes. The fixtures of
// test/fixtures/sla are deployed through root's REST API; clients reach servers by name (service
// DNS through the instance's resolv.conf) and by rr/closest addresses across workers; undeploying
// leaves nothing behind on any host.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { existsSync, readFileSync } from 'node:fs';
import { labFor } from '../../lab/lab.ts';
import { Deployment, poll, type DeploymentSpec, type ServiceInfo } from '../../harness/e2e-harness.ts';
import { SLA_FIXTURES as FIXTURES } from '../../harness/fixtures.ts';
import { join } from 'node:path';

function fixture(name: string, edit?: (sla: { applications: Array<{ microservices: Array<Record<string, unknown>> }> }) => void): string {
  const sla = JSON.parse(readFileSync(join(FIXTURES, name), 'utf8')) as { applications: Array<{ microservices: Array<Record<string, unknown>> }> };
  edit?.(sla);
  return JSON.stringify(sla);
}

const byName = (services: ServiceInfo[], n: string): ServiceInfo => {
  const s = services.find((x) => x.microservice_name === n);
  if (!s) throw new Error(`no service ${n}`);
  return s;
};

/** The whole e2e scenario; the Mosquitto variant runs it again with an external broker. */
export async function e2eScenario(t: TestContext, spec: Partial<DeploymentSpec> = {}): Promise<void> {
  const lab = await labFor(t, { hosts: ['ctl', 'w1', 'w2', 'w3'] });
  const d = new Deployment(lab, { workers: ['w1', 'w2', 'w3'], ...spec });
  t.after(() => d.stop());
  try {
    await d.start();

    // --- webapp: HTTP server (two instances on different workers) and a client that calls it by name.
    const web = await d.submit(fixture('process-web-client.json', (sla) => {
      const w = sla.applications[0]!.microservices[0]!;
      w.constraints = [...((w.constraints as unknown[] | undefined) ?? []), { type: 'anti_affinity' }];
    }));
    const server = byName(web.services, 'web');
    const client = byName(web.services, 'client');
    await d.deployInstance(server.microserviceID);
    await d.deployInstance(server.microserviceID);
    await d.deployInstance(client.microserviceID);
    const servers = await d.waitState(server.microserviceID, 2, ['RUNNING']);
    const [cl] = await d.waitState(client.microserviceID, 1, ['RUNNING']);
    assert.ok(cl?.worker_id);
    assert.notEqual(servers[0]!.worker_id, servers[1]!.worker_id, 'anti-affinity spreads the servers');
    assert.ok(servers.some((s) => s.worker_id !== cl.worker_id), 'a server runs on another worker than the client');
    assert.match(String(servers[0]!.ns_ip), /^10\.18\.\d+\.\d+$/, 'namespace address from the worker subnet reported to root');
    t.diagnostic(`servers on ${servers.map((s) => s.worker_id).join(', ')}; client on ${cl.worker_id}`);

    const curl = async (url: string, extra: string[] = []): Promise<string> => {
      const r = await d.inInstance(cl.worker_id!, client.microserviceID, 0, ['curl', '-sS', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', ...extra, url]);
      return r.code === 0 ? r.stdout : `curl exit ${r.code}: ${r.stderr.trim()}`;
    };
    // The first packets of a flow wait for the route query; names resolve through the worker's DNS.
    for (const url of ['http://closest.web/', 'http://web/', 'http://rr.web/', 'http://web.demo/', 'http://10.30.30.30/', 'http://10.30.30.31/']) {
      const code = await poll(`${url} from the client instance`, async () => ((await curl(url)) === '200' ? '200' : undefined), 20_000, 300)
        .catch((e: Error) => `${e.message}: ${url}`);
      assert.equal(code, '200', `${url} from the client instance`);
    }
    // Round robin really alternates across both workers: 6 requests, both instances answer.
    const svcView = await d.service(server.microserviceID);
    for (let i = 0; i < 6; i++) assert.equal(await curl('http://10.30.30.30/'), '200', `rr request ${i}`);
    // IPv6: the AAAA answer of the policy name, when root gave the service a v6 address.
    // (python's http.server listens on IPv4 only, so IPv6 is checked with ICMP here and TCP below.)
    assert.ok(svcView.rr_ip_v6 && svcView.closest_ip_v6, 'root gave the service IPv6 policy addresses');
    for (const name of ['rr.web', 'closest.web']) {
      const ping = await d.inInstance(cl.worker_id!, client.microserviceID, 0, ['ping', '-6', '-c', '2', '-W', '3', name]);
      assert.equal(ping.code, 0, `ping -6 ${name} (AAAA + ICMPv6 echo through the overlay): ${ping.stdout}${ping.stderr}`);
    }
    // SPEC §5.1: bridge, veths and TUN all carry the path MTU less the tunnel overhead, and a packet of
    // exactly that size crosses the overlay to the other worker unfragmented (DF set).
    {
      const wh = d.hostOfWorker(cl.worker_id!);
      const ns = d.netnsOf(cl.worker_id!, client.microserviceID, 0);
      const mtuOf = async (argv: string[]): Promise<Array<[string, number]>> =>
        (JSON.parse(await wh.execOk([...argv, 'ip', '-j', 'link', 'show'])) as Array<{ ifname: string; mtu: number }>).map((l) => [l.ifname, l.mtu]);
      const host = new Map(await mtuOf([]));
      const inner = (await mtuOf(['ip', 'netns', 'exec', ns])).find(([n]) => n === 'eth0')![1];
      const underlay = host.get('eth0')!;
      assert.ok(inner < underlay - 28, `inner MTU ${inner} leaves room for the tunnel under the underlay's ${underlay}`);
      const overlayDevs = [...host].filter(([n]) => n === 'canopy0' || n === 'canopytun0' || /^cv/.test(n));
      assert.ok(overlayDevs.length >= 3, `bridge, TUN and a veth on the worker: ${JSON.stringify([...host])}`);
      for (const [n, m] of overlayDevs) assert.equal(m, inner, `MTU of ${n}`);
      // The instance IP of a server on another worker: the ping must cross the tunnel.
      const remote = String(servers.find((x) => x.worker_id !== cl.worker_id)!.instance_ip);
      const full = await d.inInstance(cl.worker_id!, client.microserviceID, 0, ['ping', '-c', '2', '-W', '3', '-M', 'do', '-s', String(inner - 28), remote]);
      assert.equal(full.code, 0, `a DF ping of ${inner} bytes crosses the overlay: ${full.stdout}${full.stderr}`);
      const over = await d.inInstance(cl.worker_id!, client.microserviceID, 0, ['ping', '-c', '1', '-W', '2', '-M', 'do', '-s', String(inner - 27), remote]);
      assert.notEqual(over.code, 0, 'one byte more does not fit the instance\'s MTU');
    }
    // The client process itself (its own resolv.conf, its own loop) gets answers too.
    // (poll throws when the time is up: a client that never logs 200 fails the test.)
    await poll('the client command logs 200', async () => {
      // Read as a user reads it: through root, the cluster and the worker (no side door to the worker).
      const logs = await d.instanceLogs(client.microserviceID, 0, 'stdout');
      return /^200$/m.test(logs) ? true : undefined;
    }, 20_000);
    // Host port mapping: port 8080 on the server's worker reaches its instance (DNAT).
    const sHost = d.hostOfWorker(servers[0]!.worker_id!);
    const viaPort = await lab.host('ctl').exec(['curl', '-sS', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', `http://${sHost.ip}:8080/`]);
    assert.equal(viaPort.stdout, '200', `host port 8080 on ${sHost.name}: ${viaPort.stderr}`);

    // --- iperf: a one-shot client runs iperf3 against the server's rr address across workers.
    const iperf = await d.submit(fixture('process-iperf.json', (sla) => {
      // Short run: the test checks that it works, not how fast.
      const c = sla.applications[0]!.microservices[1]!;
      c.cmd = ['sh', '-c', 'sleep 1; iperf3 -c 10.30.35.35 -t 2'];
    }));
    const ips = byName(iperf.services, 'server');
    const ipc = byName(iperf.services, 'client');
    await d.deployInstance(ips.microserviceID);
    await d.waitState(ips.microserviceID, 1, ['RUNNING']);
    await d.deployInstance(ipc.microserviceID);
    const [done] = await d.waitState(ipc.microserviceID, 1, ['COMPLETED', 'FAILED'], 60_000);
    assert.equal(done?.state, 'COMPLETED', `iperf3 client: ${JSON.stringify(done)}`);
    // Local loop under load, then a new service whose instances all land on the client's worker. This
    // step once failed in about half the runs: the bridge's MAC followed its lowest port, so undeploying
    // the one-shot iperf client could take the gateway's MAC away from the client instance
    // (docs/known-issues.md, test/integration/gateway-mac.test.ts).
    let stress: Awaited<ReturnType<typeof d.submit>> | undefined;
    await t.test('local loop under load: TCP over IPv6 to a same-worker server, then a new four-instance service by rr', async () => {
      // TCP over IPv6: the webapp client runs iperf3 against the server's rr IPv6 address.
      const rr6 = String((await d.service(ips.microserviceID)).rr_ip_v6);
      const tcp6 = await d.inInstance(cl.worker_id!, client.microserviceID, 0, ['iperf3', '-c', rr6, '-t', '1', '-J'], 30_000);
      assert.equal(tcp6.code, 0, `iperf3 -c ${rr6}: ${tcp6.stdout.slice(-500)}${tcp6.stderr}`);
      const bps = (JSON.parse(tcp6.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
      t.diagnostic(`iperf3 over IPv6 through the overlay: ${(bps / 1e6).toFixed(0)} Mbit/s (not asserted)`);

      // Stress: a zero-request server scaled to several instances, reached by its rr address.
      stress = await d.submit(fixture('stress-zero-request.json'));
      const sw = byName(stress.services, 'web');
      for (let i = 0; i < 4; i++) await d.deployInstance(sw.microserviceID);
      const stressInstances = await d.waitState(sw.microserviceID, 4, ['RUNNING']);
      const rr = String((await d.service(sw.microserviceID)).rr_ip);
      const stressOk = await poll('stress rr address', async () => ((await curl(`http://${rr}/`)) === '200' ? '200' : undefined), 20_000).catch(() => null);
      if (!stressOk) {
        // What the client's worker sees, for the failure message.
        const i0 = stressInstances[0]!;
        const h = d.hostOfWorker(cl.worker_id!);
        const diag = [
          `instances: ${JSON.stringify(stressInstances.map((i) => [i.instance_n, i.worker_id, i.ns_ip, i.instance_ip]))} rr ${rr}`,
          `curl rr: ${await curl(`http://${rr}/`)}`,
          `curl ns_ip ${i0.ns_ip}: ${await curl(`http://${String(i0.ns_ip)}/`)}`,
          (await d.inInstance(cl.worker_id!, client.microserviceID, 0, ['ping', '-c', '1', '-W', '2', rr])).stdout,
          (await h.exec(['sh', '-c', 'curl -s http://127.0.0.1:10200/metrics | grep -v "^#" | grep -v " 0$"'])).stdout,
          `curl rr again: ${await curl(`http://${rr}/`)}`,
          // Who else holds that address at root (a stale or shared entry would explain a misroute).
          `root addresses: ${JSON.stringify(await Promise.all([...web.services, ...iperf.services, ...stress.services].map(async (s) => {
            const v = await d.service(s.microserviceID) as { microservice_name?: string; rr_ip?: string; closest_ip?: string; instances?: Array<{ instance_n: number; instance_ip?: string; state: string }> };
            return [v.microservice_name, v.rr_ip, v.closest_ip, (v.instances ?? []).map((i) => `${i.instance_n}:${i.instance_ip}:${i.state}`)];
          })))}`,
          (await h.exec(['sh', '-c', 'curl -s http://127.0.0.1:10200/metrics | grep -v "^#" | grep -v " 0$" | grep "datapath\\|proxy"'])).stdout,
          (await h.exec(['sh', '-c', 'ip -s link show canopytun0; tc -s qdisc show dev canopytun0; nstat -asz 2>/dev/null | grep -v " 0 " | grep -iE "drop|discard|noroute|err|forw|InReceives|OutRequests"; nft list ruleset | head -40'])).stdout,
          (await d.hostOfWorker(i0.worker_id!).exec(['ip', 'netns', 'exec', d.netnsOf(i0.worker_id!, sw.microserviceID, i0.instance_n), 'ss', '-ltn'])).stdout,
        ];
        assert.fail(`stress rr address ${rr} never answered:\n${diag.join('\n')}`);
      }
    });

    // oakestra-readme-clientsrvr.json (containers) has its own lab test: e2e-oakestra-readme.test.ts.

    // --- undeploy everything: nothing is left on any host.
    for (const app of [web, iperf, stress]) if (app) await d.api('DELETE', `/api/v1/application/${app.applicationID}`);
    for (const h of ['w1', 'w2', 'w3']) {
      const left = await poll(`${h} clean after undeploy`, async () => {
        const l = await d.leftovers(h);
        return l.length === 0 ? l : undefined;
      }, 30_000).catch(async () => d.leftovers(h));
      assert.deepEqual(left, [], `${h} leftovers`);
    }
    assert.ok(!existsSync(`/etc/netns/${d.netnsOf(cl.worker_id!, client.microserviceID, 0)}`), 'resolv.conf of the client removed');
  } catch (e) {
    for (const n of ['root', 'cluster', 'w1', 'w2', 'w3']) t.diagnostic(`--- ${n} ---\n${d.output(n).slice(-6000)}`);
    throw e;
  }
}

