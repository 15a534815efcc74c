import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Proto } from '../../../netstack/table.ts';
import { PacketInfo, parsePacket } from '../../../netstack/packet.ts';
import { clampMss } from '../../../netstack/mss.ts';
import { VNET_HDR_LEN } from '../../../netstack/vnet.ts';
import { build, checksumsOk, completePartial, toPartial } from '../../../harness/packet-build.ts';

function mssOf(b: Uint8Array, m: PacketInfo): number {
  for (let i = m.l4 + 20; i < m.l4 + m.tcpHdrLen;) {
    if (b[i] === 1) { i++; continue; }
    if (b[i] === 2) return (b[i + 2] << 8) | b[i + 3];
    i += b[i + 1];
  }
  return -1;
}

const layouts: Array<[string, number[]]> = [
  ['aligned', [2, 4, 0x05, 0xb4]],
  ['after one NOP (odd offset)', [1, 2, 4, 0x05, 0xb4, 1, 1, 1]],
  ['after SACK-permitted and a timestamp', [4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 4, 0x05, 0xb4, 0, 0, 0]],
];

for (const family of [4, 6] as const) {
  for (const [name, opts] of layouts) {
    for (const partial of [false, true]) {
      test(`SYN MSS 1460 is clamped to the overlay's, IPv${family}, ${name}, ${partial ? 'partial' : 'full'} checksum`, () => {
        let b = build({ family, proto: Proto.TCP, src: family === 4 ? '10.18.1.2' : 'fdc0::2', dst: family === 4 ? '10.30.0.10' : 'fdc0:30::10', tcpOptions: opts, tcpFlags: 0x02 });
        if (partial) b = toPartial(b);
        const base = partial ? VNET_HDR_LEN : 0;
        const m = new PacketInfo();
        assert.ok(parsePacket(b, base, b.length - base, m));
        assert.equal(clampMss(b, m, 1360, partial), true);
        assert.equal(mssOf(b, m), 1360);
        const plain = partial ? completePartial(b) : b;
        assert.ok(checksumsOk(plain));
        assert.equal(clampMss(b, m, 1360, partial), false, 'already small enough');
      });
    }
  }
}

test('non-SYN segments and malformed options are left alone', () => {
  const m = new PacketInfo();
  const ack = build({ family: 4, proto: Proto.TCP, src: '10.0.0.1', dst: '10.0.0.2', tcpOptions: [2, 4, 5, 0xb4], tcpFlags: 0x10 });
  assert.ok(parsePacket(ack, 0, ack.length, m));
  assert.equal(clampMss(ack, m, 1000, false), false);
  const bad = build({ family: 4, proto: Proto.TCP, src: '10.0.0.1', dst: '10.0.0.2', tcpOptions: [3, 0, 2, 4], tcpFlags: 0x02 });
  assert.ok(parsePacket(bad, 0, bad.length, m));
  assert.equal(clampMss(bad, m, 1000, false), false);
  assert.ok(checksumsOk(bad));
});
