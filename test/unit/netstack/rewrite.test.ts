import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Proto, newRewrite } from '../../../netstack/table.ts';
import { Frag, PacketInfo, parsePacket } from '../../../netstack/packet.ts';
import { applyRewrite } from '../../../netstack/rewrite.ts';
import { VNET_HDR_LEN } from '../../../netstack/vnet.ts';
import { addr, build, checksumsOk, completePartial, toPartial, type Spec } from '../../../harness/packet-build.ts';

function rand4(): string { return Array.from({ length: 4 }, () => Math.floor(Math.random() * 256)).join('.'); }
function rand6(): string { return Array.from({ length: 8 }, () => Math.floor(Math.random() * 65536).toString(16)).join(':'); }

const cases: Array<[string, 4 | 6, number]> = [
  ['TCP/IPv4', 4, Proto.TCP], ['UDP/IPv4', 4, Proto.UDP], ['ICMP/IPv4', 4, Proto.ICMP],
  ['TCP/IPv6', 6, Proto.TCP], ['UDP/IPv6', 6, Proto.UDP], ['ICMPv6', 6, Proto.ICMPV6],
];

for (const [name, family, proto] of cases) {
  for (const partial of [false, true]) {
    if (partial && (proto === Proto.ICMP || proto === Proto.ICMPV6)) continue;
    test(`${name} rewrite keeps checksums valid (${partial ? 'partial' : 'full'} checksum)`, () => {
      const m = new PacketInfo();
      const rw = newRewrite();
      for (let i = 0; i < 500; i++) {
        const r = family === 4 ? rand4 : rand6;
        const spec: Spec = { family, proto, src: r(), dst: r(), sport: 1 + (i * 7919) % 65535, dport: 443, payload: i % 301 };
        let b = build(spec);
        if (partial) b = toPartial(b);
        const base = partial ? VNET_HDR_LEN : 0;
        assert.ok(parsePacket(b, base, b.length - base, m), `parse ${name}`);
        rw.rewriteSrc = i % 3 !== 1;
        rw.rewriteDst = i % 3 !== 2;
        const ns = addr(r());
        const nd = addr(r());
        rw.src.set(ns); rw.dst.set(nd);
        // Ports too, on every other packet: only TCP and UDP have them to change.
        rw.newSport = i % 2 === 0 ? 32768 + ((i * 104729) % 28232) : 0;
        rw.newDport = i % 4 === 1 ? 1 + ((i * 7) % 65535) : 0;
        const before = { sport: m.sport, dport: m.dport };
        applyRewrite(b, m, rw, partial);
        const plain = partial ? completePartial(b) : b;
        assert.ok(checksumsOk(plain), `${name} #${i} checksums verify after rewrite`);
        const alen = family === 4 ? 4 : 16;
        if (rw.rewriteSrc) assert.deepEqual(plain.subarray(m.srcOff - base, m.srcOff - base + alen), ns);
        if (rw.rewriteDst) assert.deepEqual(plain.subarray(m.dstOff - base, m.dstOff - base + alen), nd);
        const l4 = m.l4 - base;
        const ports = { sport: (plain[l4]! << 8) | plain[l4 + 1]!, dport: (plain[l4 + 2]! << 8) | plain[l4 + 3]! };
        if (proto === Proto.TCP || proto === Proto.UDP) {
          assert.deepEqual(ports, { sport: rw.newSport || before.sport, dport: rw.newDport || before.dport });
          assert.deepEqual({ sport: m.sport, dport: m.dport }, ports, 'the parsed ports follow the packet');
        } else {
          assert.deepEqual({ sport: m.sport, dport: m.dport }, before, 'an echo identifier is never changed');
        }
      }
    });
  }
}

test('UDP/IPv4 without a checksum keeps none after a rewrite', () => {
  const b = build({ family: 4, proto: Proto.UDP, src: '10.0.0.1', dst: '10.30.0.5', payload: 33, noUdpCsum: true });
  const m = new PacketInfo();
  assert.ok(parsePacket(b, 0, b.length, m));
  const rw = newRewrite();
  rw.rewriteDst = true; rw.dst.set(addr('10.18.1.2'));
  applyRewrite(b, m, rw, false);
  assert.equal(b[26] | b[27], 0);
  assert.ok(checksumsOk(b));
});

test('parser rejects what the overlay does not carry', () => {
  const m = new PacketInfo();
  const frag = build({ family: 4, proto: Proto.UDP, src: '10.0.0.1', dst: '10.0.0.2', payload: 10 });
  frag[6] = 0x20; // more fragments, offset 0: the first fragment, with its UDP header
  assert.ok(parsePacket(frag, 0, frag.length, m));
  assert.equal(m.frag, Frag.First);
  assert.equal(m.sport, 40000);
  frag[7] = 0x10; // offset 128 bytes: a later fragment, no ports
  assert.ok(parsePacket(frag, 0, frag.length, m));
  assert.equal(m.frag, Frag.Later);
  assert.equal(m.csumOff, -1);
  const icmpErr = build({ family: 4, proto: Proto.ICMP, src: '10.0.0.1', dst: '10.0.0.2', icmpType: 3 });
  assert.equal(parsePacket(icmpErr, 0, icmpErr.length, m), false);
  const short = build({ family: 6, proto: Proto.TCP, src: 'fdc0::1', dst: 'fdc0::2' });
  assert.equal(parsePacket(short, 0, 50, m), false);
  assert.equal(parsePacket(new Uint8Array([0x70, 1, 2]), 0, 3, m), false);
  const ok = build({ family: 6, proto: Proto.ICMPV6, src: 'fdc0::1', dst: 'fdc0::2', sport: 77 });
  assert.ok(parsePacket(ok, 0, ok.length, m));
  assert.equal(m.sport, 77);
  assert.equal(m.dport, 77);
});
