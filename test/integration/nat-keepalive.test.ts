// Keepalives keep NAT bindings open (SPEC §5.4). Worker w1 sits behind an emulated NAT: its only
// link is to host `nat`, which masquerades it onto the lab's network, accepts nothing addressed to
// itself, and forgets an idle UDP binding after 3 s (conntrack's UDP timeouts, set in its namespace).
// w1 advertises the NAT's address as its tunnel endpoint, so w2 reaches it only through the binding
// w1's own datagrams opened. A server runs on w1, an idle caller on w2. After an idle period of more
// than three times the NAT's timeout with no application traffic at all, the caller's request must
// still get through, and the NAT must never have dropped the binding in between (its conntrack table
// is read throughout): only the tunnel's keepalives (RTT probes, every second) kept it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { Deployment, poll, sleep } from '../../harness/e2e-harness.ts';
import { readSlaFixture } from '../../harness/fixtures.ts';

const NAT_UDP_TIMEOUT_S = 3;
const PRIVATE = { nat: '198.19.254.1', w1: '198.19.254.2' };

test('NAT keepalive: a worker behind a NAT that forgets idle UDP bindings after 3 s still gets requests after 10 s of silence',
  { skip: unavailable(labSkipReason()), timeout: 150_000 }, async (t) => {
    const lab = await labFor(t, { hosts: ['ctl', { name: 'nat', forwarding: true }, 'w1', 'w2'], ipv6: false });
    const nat = lab.host('nat');
    const w1 = lab.host('w1');
    // w1 leaves the lab's switch: its only way out is the NAT.
    await w1.execOk(['ip', 'link', 'set', 'eth0', 'down']);
    await w1.execOk(['ip', 'addr', 'flush', 'dev', 'eth0']);
    execFileSync('ip', ['link', 'add', 'inside', 'netns', nat.netns, 'type', 'veth', 'peer', 'name', 'eth1', 'netns', w1.netns]);
    await nat.execOk(['ip', 'addr', 'add', `${PRIVATE.nat}/30`, 'dev', 'inside']);
    await nat.execOk(['ip', 'link', 'set', 'inside', 'up']);
    await w1.execOk(['ip', 'addr', 'add', `${PRIVATE.w1}/30`, 'dev', 'eth1']);
    await w1.execOk(['ip', 'link', 'set', 'eth1', 'up']);
    await w1.execOk(['ip', 'route', 'add', 'default', 'via', PRIVATE.nat]);
    // Masquerade out of eth0; nothing addressed to the NAT itself on the tunnel port is taken in, so
    // a datagram that finds no binding is dropped (and, dropped before conntrack confirms it, leaves
    // no entry that would make the NAT pick another port for w1's next binding).
    await nat.execOk(['nft', '-f', '-'], { input: `table ip labnat {
      chain post { type nat hook postrouting priority 100; oifname "eth0" masquerade; }
      chain in { type filter hook input priority 0; udp dport 50103 drop; }
    }` });
    await nat.execOk(['sysctl', '-q', '-w', `net.netfilter.nf_conntrack_udp_timeout=${NAT_UDP_TIMEOUT_S}`,
      `net.netfilter.nf_conntrack_udp_timeout_stream=${NAT_UDP_TIMEOUT_S}`]);

    const d = new Deployment(lab, { workers: ['w1', 'w2'], workerArgsOf: { w1: ['--tunnel-endpoint', `${nat.ip}:50103`] } });
    t.after(() => d.stop());
    try {
      await d.start();
      const sla = readSlaFixture('process-web-client.json');
      const [web, client] = sla.applications[0]!.microservices;
      web!.constraints = [{ type: 'direct', node: d.workerIdOf('w1') }];
      // The caller only sleeps: every request below is the test's own.
      client!.cmd = ['sleep', '1000000'];
      client!.constraints = [{ type: 'direct', node: d.workerIdOf('w2') }];
      const app = await d.submit(JSON.stringify(sla));
      const srv = app.services.find((s) => s.microservice_name === 'web')!;
      const cli = app.services.find((s) => s.microservice_name === 'client')!;
      await d.deployInstance(srv.microserviceID);
      await d.deployInstance(cli.microserviceID);
      await d.waitState(srv.microserviceID, 1, ['RUNNING']);
      const [c0] = await d.waitState(cli.microserviceID, 1, ['RUNNING']);
      const get = async (): Promise<string> => {
        const r = await d.inInstance(c0!.worker_id!, cli.microserviceID, 0, ['curl', '-sS', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', 'http://10.30.30.30/'], 10_000);
        return r.code === 0 ? r.stdout : `curl ${r.code}: ${r.stderr.trim()}`;
      };
      await poll('the caller on w2 reaches the server behind the NAT', async () => (await get()) === '200', 30_000);
      const rules = await nat.execOk(['nft', 'list', 'table', 'ip', 'labnat']);
      assert.match(rules, /masquerade/, 'the NAT is in place');

      // No application traffic for three timeouts and more: only keepalives. Meanwhile the NAT's
      // binding of w1's tunnel socket is looked up again and again; it must never be gone.
      const binding = new RegExp(`^ipv4 .* udp .* src=${PRIVATE.w1.replace(/\./g, '\\.')} dst=\\S+ sport=50103 `, 'm');
      const idleUntil = Date.now() + (NAT_UDP_TIMEOUT_S * 3 + 1) * 1000;
      let looks = 0;
      const missing: string[] = [];
      while (Date.now() < idleUntil) {
        looks++;
        if (!binding.test(await nat.execOk(['cat', '/proc/net/nf_conntrack']))) missing.push(`${((idleUntil - Date.now()) / 1000).toFixed(1)} s before the end`);
        await sleep(250);
      }
      assert.ok(looks >= 10, `the binding was looked up ${looks} times`);
      assert.deepEqual(missing, [], `the NAT had forgotten w1's tunnel binding at ${missing.length} of ${looks} looks`);
      assert.equal(await get(), '200', 'a request after the idle period gets through the NAT');
    } catch (e) {
      for (const n of ['cluster', 'w1', 'w2']) t.diagnostic(`--- ${n} ---\n${d.output(n).slice(-3000)}`);
      throw e;
    }
  });
