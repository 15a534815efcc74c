import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addrEquals, addrLen, addrOffset, parseAddr } from '../../../lab/impair/frame.ts';
import { arpFrame, ipv4Frame, ipv6Frame, v6 } from './frames.ts';

test('IPv4 and IPv6 source and destination are found', () => {
  const f4 = ipv4Frame([198, 18, 0, 1], [198, 18, 0, 2]);
  assert.ok(addrEquals(f4, addrOffset(f4, f4.length, 'src'), parseAddr('198.18.0.1')));
  assert.ok(addrEquals(f4, addrOffset(f4, f4.length, 'dst'), parseAddr('198.18.0.2')));
  assert.equal(addrLen(f4), 4);
  const f6 = ipv6Frame(v6(1), v6(2));
  assert.ok(addrEquals(f6, addrOffset(f6, f6.length, 'src'), parseAddr('2001:2::1')));
  assert.ok(addrEquals(f6, addrOffset(f6, f6.length, 'dst'), parseAddr('2001:2::2')));
  assert.equal(addrLen(f6), 16);
});

test('ARP, NDP, truncated and non-IP frames are not matched', () => {
  const arp = arpFrame();
  assert.equal(addrOffset(arp, arp.length, 'dst'), -1);
  for (const t of [133, 134, 135, 136, 137]) {
    const ndp = ipv6Frame(v6(1), v6(2), 58, t);
    assert.equal(addrOffset(ndp, ndp.length, 'dst'), -1, `ICMPv6 type ${t}`);
  }
  const echo = ipv6Frame(v6(1), v6(2), 58, 128);
  assert.notEqual(addrOffset(echo, echo.length, 'dst'), -1, 'ICMPv6 echo is matched');
  const f4 = ipv4Frame([1, 2, 3, 4], [5, 6, 7, 8]);
  assert.equal(addrOffset(f4, 20, 'dst'), -1);
  assert.equal(addrOffset(f4, 10, 'dst'), -1);
});

test('addresses parse to bytes; junk is refused', () => {
  assert.deepEqual([...parseAddr('198.18.0.7')], [198, 18, 0, 7]);
  assert.deepEqual([...parseAddr('2001:2::a')], v6(10));
  assert.deepEqual([...parseAddr('::1')], [...new Array<number>(15).fill(0), 1]);
  for (const bad of ['198.18.0', '300.1.1.1', 'host', '2001:2::/64', '']) assert.throws(() => parseAddr(bad), /not an IP/, bad);
});
