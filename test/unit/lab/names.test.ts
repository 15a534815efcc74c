import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import {
  PREFIX_RE, checkHostName, hostAddress, hostNetns, newPrefix, prefixOfNetns, relayHostTap, switchNetns, switchPort,
} from '../../../lab/names.ts';

test('prefixes are short, well-formed and skip the ones in use', () => {
  const seq = [Buffer.from([0xab, 0xcd]), Buffer.from([0xab, 0xcd]), Buffer.from([0x00, 0x01])];
  let i = 0;
  const p = newPrefix((x) => x === 'clabcd', () => seq[i++]!);
  assert.equal(p, 'cl0001');
  assert.match(newPrefix(() => false), PREFIX_RE);
  assert.throws(() => newPrefix(() => true), /no free prefix/);
});

test('namespace names map back to their prefix; foreign names do not', () => {
  assert.equal(prefixOfNetns(hostNetns('cl12ab', 'w1')), 'cl12ab');
  assert.equal(prefixOfNetns(switchNetns('cl12ab')), 'cl12ab');
  assert.equal(prefixOfNetns('cl12ab'), null);
  assert.equal(prefixOfNetns('clzzzz-w1'), null);
  assert.equal(prefixOfNetns('myns'), null);
  assert.notEqual(switchNetns('cl12ab'), hostNetns('cl12ab', 'sw'), 'a host called sw cannot clash with the switch');
});

test('host names are checked', () => {
  checkHostName('w1');
  checkHostName('edge-node-012345');
  for (const bad of ['', 'W1', 'a_b', '-x', 'a'.repeat(17), 'a b', 'a/b']) {
    assert.throws(() => checkHostName(bad), /bad host name/, bad);
  }
});

test('interface names fit the kernel limit for the largest lab', () => {
  for (const n of [switchPort(252), relayHostTap(252)]) assert.ok(Buffer.byteLength(n) <= 15, n);
});

test('addresses follow the host index', () => {
  assert.deepEqual(hostAddress(0), { ip: '198.18.0.1', ip6: '2001:2::1' });
  assert.deepEqual(hostAddress(9), { ip: '198.18.0.10', ip6: '2001:2::a' });
  assert.throws(() => hostAddress(253), /out of range/);
});
