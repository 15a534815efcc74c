import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePortMappings, PortSpecError } from '../../../orchestrator/worker/net/port-mappings.ts';
import { renderRuleset } from '../../../orchestrator/worker/net/nft-ruleset.ts';
import { AddressBook, AddressesExhausted } from '../../../orchestrator/worker/net/address-book.ts';
import { vethName } from '../../../orchestrator/worker/net/net-manager.ts';

test('port field: host:container[/proto] entries, bare ports, clear errors', () => {
  assert.deepEqual(parsePortMappings('8080:80/tcp; 9000/udp;5353:53/udp'), [
    { host: 8080, container: 80, proto: 'tcp' }, { host: 9000, container: 9000, proto: 'udp' }, { host: 5353, container: 53, proto: 'udp' },
  ]);
  assert.deepEqual(parsePortMappings(undefined), []);
  assert.deepEqual(parsePortMappings(''), []);
  for (const bad of ['0:80', '80:70000', '80/sctp', 'a:b', '1:2:3', '80:80;80/tcp']) {
    assert.throws(() => parsePortMappings(bad), PortSpecError, bad);
  }
  // tcp and udp on the same host port are two mappings, not a clash.
  assert.equal(parsePortMappings('53/udp;53/tcp').length, 2);
});

test('nft ruleset: DNAT per family from outside and from the host, masquerade only off the overlay', () => {
  const text = renderRuleset({
    table: 'canopy', bridge: 'canopy0', tun: 'canopytun0', subnetV4: '10.18.1.0/24', subnetV6: 'fdc0:18:0:1::/64',
    targets: [{ ns_ip: '10.18.1.2', ns_ip_v6: 'fdc0:18:0:1::2', ports: [{ host: 8080, container: 80, proto: 'tcp' }] }],
  });
  // Replaced atomically: the table is created (if missing), deleted and rebuilt in one transaction.
  assert.match(text, /^add table inet canopy\ndelete table inet canopy\ntable inet canopy \{/);
  assert.match(text, /iifname != "canopy0" meta nfproto ipv4 tcp dport 8080 dnat ip to 10\.18\.1\.2:80/);
  assert.match(text, /fib daddr type local meta nfproto ipv6 tcp dport 8080 dnat ip6 to \[fdc0:18:0:1::2\]:80/);
  assert.match(text, /ip saddr 10\.18\.1\.0\/24 oifname != \{ "canopy0", "canopytun0" \} masquerade/);
  const none = renderRuleset({ table: 't', bridge: 'b', tun: 'u', subnetV4: '10.18.1.0/24', subnetV6: null, targets: [] });
  assert.doesNotMatch(none, /dnat|ip6 saddr/);
});

test('address book: gateway .1, lowest free from .2, same address for the same key across restarts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-ab-'));
  const file = join(dir, 'addresses.json');
  try {
    const a = new AddressBook(file, '10.18.3.0/24', 'fdc0:18:0:3::/64');
    assert.deepEqual(a.gateway(), { index: 1, v4: '10.18.3.1', v6: 'fdc0:18:0:3::1' });
    assert.equal(a.take('x').v4, '10.18.3.2');
    assert.equal(a.take('y').v4, '10.18.3.3');
    assert.equal(a.take('x').v6, 'fdc0:18:0:3::2');
    a.release('x');
    const b = new AddressBook(file, '10.18.3.0/24', 'fdc0:18:0:3::/64');
    assert.equal(b.take('y').v4, '10.18.3.3', 'kept across a restart');
    assert.equal(b.take('z').v4, '10.18.3.2', 'a released address is reused');
    // Another subnet (root reassigned it): old indexes are dropped.
    const c = new AddressBook(file, '10.18.9.0/24', null);
    assert.equal(c.take('y').v4, '10.18.9.2');
    const tiny = new AddressBook(join(dir, 't.json'), '10.18.4.0/30', null);
    assert.equal(tiny.take('only').v4, '10.18.4.2');
    assert.throws(() => tiny.take('more'), AddressesExhausted);
    writeFileSync(join(dir, 'bad.json'), '{"subnet_v4":"10.18.5.0/24","keys":{"k":999,"j":-1}}');
    assert.equal(new AddressBook(join(dir, 'bad.json'), '10.18.5.0/24', null).has('k'), false, 'out-of-range entries ignored');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('veth names fit in 15 characters and differ per instance', () => {
  const a = vethName('0123456789abcdef01234567-0');
  assert.ok(a.length <= 15);
  assert.notEqual(a, vethName('0123456789abcdef01234567-1'));
  assert.notEqual(a, vethName('0123456789abcdef01234567-0', 'peer'));
  assert.equal(a, vethName('0123456789abcdef01234567-0'));
});
