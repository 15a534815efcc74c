// The service DNS on an emulated worker, asked from inside an instance namespace with the resolv.conf
// the worker writes; names outside the zone go to dnsmasq on another lab host (never the machine's
// own resolvers).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { addBridge, addInstance, resolvConfFor, cleanupResolvConfs, startSemanticHost } from '../../harness/semantic-lab.ts';
import type { ServiceRoute } from '../../proxy/route-messages.ts';

after(cleanupResolvConfs);

const ms2: ServiceRoute = {
  service_id: 's-ms2', name: 'app.ans.ms2.sns', rr_ip: '10.30.0.2', rr_ip_v6: 'fdc0:30::2', closest_ip: '10.30.0.3',
  closest_ip_v6: 'fdc0:30::3', default_policy: 'rr', ports: [{ port: 80, proto: 'tcp' }],
  instances: [{ n: 0, instance_ip: '10.30.1.1', instance_ip_v6: 'fdc0:30::1:1', ns_ip: '10.18.2.2', ns_ip_v6: 'fdc0:18:2::2',
    worker_id: 'w2', cluster_id: null, tunnel_endpoint: '198.18.0.3:50103', healthy: true }],
};
const other: ServiceRoute = {
  ...ms2, service_id: 's-other', name: 'app.ans.ms2.otherns', rr_ip: '10.30.0.12', rr_ip_v6: null, closest_ip: '10.30.0.13', closest_ip_v6: null,
  instances: [],
};

test('dig and getent from an instance namespace: short names, full names, AAAA, SRV, NXDOMAIN, forwarding', { skip: unavailable(labSkipReason()) }, async (t) => {
  const lab = await labFor(t, { hosts: ['w1', 'up'] });
  const w1 = lab.host('w1'), up = lab.host('up');
  // The test's upstream: dnsmasq on its own host, knowing one outside name.
  up.spawn(['dnsmasq', '-k', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${up.ip}`,
    '--listen-address=' + up.ip6, '--except-interface=lo', '--user=root', '--pid-file=',
    '--address=/outside.test/198.18.0.77', '--address=/outside.test/2001:2::77']);
  await up.waitListening(53, { proto: 'udp' });
  const net = await addBridge(w1, 1);
  const inst = await addInstance(lab, w1, net, 'w1i1', 2);
  await resolvConfFor(inst, { nameservers: [net.bridge4], app: 'app', appns: 'ans', svcns: 'sns' });
  await startSemanticHost(lab, w1, {
    workerId: 'w1', peerIds: { w1: 1, w2: 2 }, routes: [ms2, other], locals: [], rtt: {},
    dns: { listen: [{ address: net.bridge4 }, { address: net.bridge6 }], upstreams: [up.ip] },
  });

  const dig = async (...args: string[]): Promise<string> => (await inst.execOk(['dig', '+time=2', '+tries=1', ...args])).trim();
  const short = (...args: string[]): Promise<string> => dig('+short', ...args);

  assert.equal(await short('+search', 'closest.ms2'), '10.30.0.3');
  assert.equal(await short('+search', 'ms2'), '10.30.0.2', 'bare name: the default policy (rr)');
  assert.equal(await short('+search', 'rr.ms2'), '10.30.0.2');
  assert.equal(await short('+search', 'closest.ms2.otherns'), '10.30.0.13');
  assert.equal(await short('closest.ms2.sns.app.ans.canopy'), '10.30.0.3');
  assert.equal(await short('+search', 'AAAA', 'closest.ms2'), 'fdc0:30::3');
  assert.equal(await short('+search', 'SRV', 'ms2'), '0 0 80 ms2.sns.app.ans.canopy.');
  assert.equal(await short('0.ms2.sns.app.ans.canopy'), '10.30.1.1');
  assert.equal(await short('www.outside.test'), '198.18.0.77', 'outside names are forwarded');
  assert.equal(await short('AAAA', 'www.outside.test'), '2001:2::77');
  assert.equal(await short(`@${net.bridge6}`, 'closest.ms2.sns.app.ans.canopy'), '10.30.0.3', 'served over IPv6 too');
  assert.equal(await short('+tcp', 'closest.ms2.sns.app.ans.canopy'), '10.30.0.3', 'and over TCP');
  assert.equal(await short('+tcp', 'www.outside.test'), '198.18.0.77', 'forwarded over TCP too');
  const nx = await dig('nope.sns.app.ans.canopy');
  assert.match(nx, /status: NXDOMAIN/);
  assert.match(nx, /flags: qr aa/);
  // What applications use: the libc resolver with the search list and ndots.
  assert.match(await inst.execOk(['getent', 'ahostsv4', 'closest.ms2']), /^10\.30\.0\.3\s/m);
  assert.match(await inst.execOk(['getent', 'ahostsv6', 'closest.ms2']), /^fdc0:30::3\s/m);
  assert.match(await inst.execOk(['getent', 'ahostsv4', 'www.outside.test']), /^198\.18\.0\.77\s/m);
  const miss = await inst.exec(['getent', 'ahostsv4', 'nothere.sns.app.ans.canopy']);
  assert.equal(miss.code, 2, 'an unknown service name is not found');
});

test('an unreachable upstream: SERVFAIL for outside names, one warning with the reason, every failure in /metrics', { skip: labSkipReason() ?? false }, async (t) => {
  const lab = await labFor(t, { hosts: ['w1'] });
  const w1 = lab.host('w1');
  // An address on the lab's underlay where no host exists: queries to it go unanswered.
  const dead = '198.18.0.200';
  const net = await addBridge(w1, 1);
  const inst = await addInstance(lab, w1, net, 'w1i1', 2);
  await resolvConfFor(inst, { nameservers: [net.bridge4], app: 'app', appns: 'ans', svcns: 'sns' });
  const host = await startSemanticHost(lab, w1, {
    workerId: 'w1', peerIds: { w1: 1, w2: 2 }, routes: [ms2], locals: [], rtt: {},
    dns: { listen: [{ address: net.bridge4 }], upstreams: [dead] },
  });
  for (const name of ['a.outside.test', 'b.outside.test', 'c.outside.test']) {
    assert.match(await inst.execOk(['dig', '+time=5', '+tries=1', name]), /status: SERVFAIL/, name);
  }
  assert.equal(await inst.execOk(['dig', '+short', '+time=2', '+tries=1', '+search', 'closest.ms2']).then((o) => o.trim()), '10.30.0.3', 'the zone still answers');
  const warnings = host.lines().map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r.msg === 'DNS upstream unreachable');
  assert.equal(warnings.length, 1, `one warning, not one per query: ${JSON.stringify(warnings)}`);
  assert.equal(warnings[0]!.upstream, `${dead}:53`);
  assert.match(String(warnings[0]!.reason), /no answer within \d+ ms|EHOSTUNREACH/);
  assert.match((await host.stats()).dns, new RegExp(`canopy_dns_upstream_unreachable_total\\{upstream="${dead.replace(/\./g, '\\.')}:53"\\} 3\n`));
});
