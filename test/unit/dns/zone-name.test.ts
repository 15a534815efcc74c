import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseZoneName } from '../../../dns/zone-name.ts';
import { resolvConf, netnsResolvConfPath } from '../../../dns/resolv-conf.ts';
import { parseUpstream, upstreamsFromResolvConf } from '../../../dns/forwarder.ts';

test('zone names parse from the right', () => {
  assert.deepEqual(parseZoneName('closest.ms2.sns.a.ans.canopy', 'canopy'),
    { kind: 'service', fullName: 'a.ans.ms2.sns', selector: { kind: 'closest' } });
  assert.deepEqual(parseZoneName('ms2.sns.a.ans.canopy', 'canopy'),
    { kind: 'service', fullName: 'a.ans.ms2.sns', selector: { kind: 'default' } });
  assert.deepEqual(parseZoneName('3.ms2.sns.a.ans.canopy', 'canopy'),
    { kind: 'service', fullName: 'a.ans.ms2.sns', selector: { kind: 'instance', n: 3 } });
  assert.equal(parseZoneName('canopy', 'canopy').kind, 'apex');
  assert.equal(parseZoneName('example.org', 'canopy').kind, 'outside');
  assert.equal(parseZoneName('xcanopy', 'canopy').kind, 'outside');
  // What a resolver tries first for `closest.ms2.otherns` from sns: must be a miss, not a wrong hit.
  assert.equal(parseZoneName('closest.ms2.otherns.sns.a.ans.canopy', 'canopy').kind, 'invalid');
  assert.equal(parseZoneName('ms2.otherns.sns.a.ans.canopy', 'canopy').kind, 'invalid');
  assert.equal(parseZoneName('01.ms2.sns.a.ans.canopy', 'canopy').kind, 'invalid');
  assert.equal(parseZoneName('a.ans.canopy', 'canopy').kind, 'invalid');
  assert.equal(parseZoneName(`${'x'.repeat(31)}.sns.a.ans.canopy`, 'canopy').kind, 'invalid');
  assert.equal(parseZoneName('ms2.sns.a.ans.edge.example', 'edge.example').kind, 'service');
});

test('resolv.conf makes the short names of the spec work', () => {
  const text = resolvConf({ nameservers: ['10.18.1.1', 'fdc0:18:1::1'], app: 'a', appns: 'ans', svcns: 'sns' });
  assert.match(text, /^nameserver 10\.18\.1\.1$/m);
  assert.match(text, /^nameserver fdc0:18:1::1$/m);
  assert.match(text, /^search sns\.a\.ans\.canopy a\.ans\.canopy$/m);
  assert.match(text, /^options ndots:3 /m);
  assert.equal(netnsResolvConfPath('cl12-w1i1'), '/etc/netns/cl12-w1i1/resolv.conf');
  assert.throws(() => netnsResolvConfPath('../etc'), /bad namespace/);
});

test('upstreams parse with and without ports; the host resolv.conf is read minus ourselves', () => {
  assert.deepEqual(parseUpstream('198.18.0.9'), { address: '198.18.0.9', port: 53 });
  assert.deepEqual(parseUpstream('198.18.0.9:5353'), { address: '198.18.0.9', port: 5353 });
  assert.deepEqual(parseUpstream('[2001:2::9]:53'), { address: '2001:2::9', port: 53 });
  assert.deepEqual(parseUpstream('2001:2::9'), { address: '2001:2::9', port: 53 });
  assert.throws(() => parseUpstream('dns.example'), /bad upstream/);
  assert.deepEqual(upstreamsFromResolvConf('# x\nnameserver 10.18.1.1\nnameserver 198.18.0.9\nsearch x\n', ['10.18.1.1']),
    [{ address: '198.18.0.9', port: 53 }]);
});
