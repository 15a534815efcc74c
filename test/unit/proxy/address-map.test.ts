import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressMap, Prefix, ipBytes, ipString } from '../../../proxy/address-map.ts';

test('IP strings and bytes round-trip, including compressed and embedded-IPv4 forms', () => {
  for (const ip of ['10.30.0.2', 'fdc0:30::2', '::', '::1', 'fdc0::', '2001:2:0:1:0:0:0:1', '::ffff:198.18.0.1']) {
    const b = ipBytes(ip);
    assert.equal(ipBytes(ipString(b)).join(), b.join(), ip);
  }
  assert.equal(ipString(ipBytes('2001:2:0:1:0:0:0:1')), '2001:2:0:1::1');
  assert.equal(ipString(ipBytes('::ffff:198.18.0.1')), '::ffff:c612:1');
  assert.throws(() => ipBytes('10.30.0'), /not an IP/);
});

test('an address inside a packet buffer finds its entry; IPv6 and IPv4 never mix', () => {
  const m = new AddressMap<string>();
  m.set(ipBytes('10.30.0.2'), 'v4');
  m.set(ipBytes('fdc0:30::2'), 'v6');
  const buf = new Uint8Array(40);
  buf.set(ipBytes('fdc0:30::2'), 24);
  assert.equal(m.get(buf, 24, 6), 'v6');
  buf.set(ipBytes('10.30.0.2'), 16);
  assert.equal(m.get(buf, 16, 4), 'v4');
  assert.equal(m.getBytes(ipBytes('fdc0:30::3')), undefined);
  assert.equal(m.size, 2);
  assert.ok(m.delete(ipBytes('fdc0:30::2')));
  assert.equal(m.get(buf, 24, 6), undefined);
  assert.equal(m.size, 1);
});

test('prefixes match on their bits only', () => {
  const p = new Prefix('10.30.0.0/16'), q = new Prefix('fdc0:30::/32');
  assert.ok(p.contains(ipBytes('10.30.255.1'), 0, 4));
  assert.ok(!p.contains(ipBytes('10.31.0.1'), 0, 4));
  assert.ok(q.contains(ipBytes('fdc0:30:ffff::1'), 0, 6));
  assert.ok(!q.contains(ipBytes('fdc0:31::1'), 0, 6));
  assert.ok(!p.contains(ipBytes('fdc0:30::1'), 0, 6));
});
