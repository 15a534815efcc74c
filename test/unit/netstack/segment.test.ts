import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Proto } from '../../../netstack/table.ts';
import { PacketInfo, parsePacket } from '../../../netstack/packet.ts';
import { segmentOffloaded } from '../../../netstack/segment.ts';
import { GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4 } from '../../../netstack/vnet.ts';
import { build, checksumsOk, toPartial } from '../../../harness/packet-build.ts';

for (const [family, gso] of [[4, GSO_TCPV4], [6, GSO_TCPV6]] as const) {
  test(`a TCP/IPv${family} super-packet is cut into MSS segments with valid checksums and sequence numbers`, () => {
    const payloadLen = 10_000;
    const mss = 1448;
    const sp = build({ family, proto: Proto.TCP, src: family === 4 ? '10.18.0.2' : 'fdc0::2', dst: family === 4 ? '10.18.1.2' : 'fdc0::3', payload: payloadLen });
    const orig = sp.slice(family === 4 ? 40 : 60);
    const v = toPartial(sp, gso, mss);
    const out = new Uint8Array(65536);
    const m = new PacketInfo();
    const got: Uint8Array[] = [];
    const n = segmentOffloaded(v, 0, v.length, out, m, (b, len) => got.push(b.slice(0, len)));
    assert.equal(n, Math.ceil(payloadLen / mss));
    const pm = new PacketInfo();
    let seq = 1000;
    const joined: number[] = [];
    got.forEach((s, i) => {
      assert.ok(checksumsOk(s), `segment ${i} checksums`);
      assert.ok(parsePacket(s, 0, s.length, pm));
      const dv = new DataView(s.buffer);
      assert.equal(dv.getUint32(pm.l4 + 4), seq);
      const data = s.subarray(pm.l4 + pm.tcpHdrLen);
      assert.ok(data.length <= mss);
      seq += data.length;
      joined.push(...data);
      const psh = (s[pm.l4 + 13] & 0x08) !== 0;
      assert.equal(psh, i === got.length - 1, 'PSH only on the last segment');
    });
    assert.deepEqual(Uint8Array.from(joined), orig);
  });
}

test('a UDP (USO) super-packet becomes datagrams with their own lengths and checksums', () => {
  const sp = build({ family: 4, proto: Proto.UDP, src: '10.18.0.2', dst: '10.18.1.2', payload: 4000 });
  const v = toPartial(sp, GSO_UDP_L4, 1400);
  const got: Uint8Array[] = [];
  const n = segmentOffloaded(v, 0, v.length, new Uint8Array(65536), new PacketInfo(), (b, len) => got.push(b.slice(0, len)));
  assert.equal(n, 3);
  for (const s of got) {
    assert.ok(checksumsOk(s));
    assert.equal(new DataView(s.buffer).getUint16(24), s.length - 20);
  }
});

test('a non-GSO packet with a partial checksum is completed', () => {
  const p = build({ family: 6, proto: Proto.UDP, src: 'fdc0::2', dst: 'fdc0::3', payload: 99 });
  const v = toPartial(p, GSO_NONE, 0);
  const got: Uint8Array[] = [];
  assert.equal(segmentOffloaded(v, 0, v.length, new Uint8Array(2000), new PacketInfo(), (b, len) => got.push(b.slice(0, len))), 1);
  assert.ok(checksumsOk(got[0]));
  assert.deepEqual(got[0], p);
});

test('inconsistent offload headers are refused, not thrown', () => {
  const p = build({ family: 4, proto: Proto.UDP, src: '10.0.0.1', dst: '10.0.0.2', payload: 10 });
  const v = toPartial(p, GSO_TCPV4, 100);
  assert.equal(segmentOffloaded(v, 0, v.length, new Uint8Array(2000), new PacketInfo(), () => {}), -1);
});
