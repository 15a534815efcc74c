import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Proto } from '../../../netstack/table.ts';
import { Datapath, Counter } from '../../../netstack/datapath.ts';
import { FakeDevice, FakeNetwork, type FakeSocket } from '../../../netstack/fakes.ts';
import { StaticTable, type StaticInstance } from '../../../netstack/static-table.ts';
import { TunnelCodec, Drop, TunnelType, newRxBatch } from '../../../netstack/tunnel.ts';
import { TxPlan } from '../../../native/io.ts';
import { PacketInfo, parsePacket } from '../../../netstack/packet.ts';
import { GSO_TCPV4, GSO_TCPV6, VNET_HDR_LEN } from '../../../netstack/vnet.ts';
import { addr, build, checksumsOk, completePartial, icmpErrorAbout, toPartial } from '../../../harness/packet-build.ts';

const key = randomBytes(32);
const A4: StaticInstance = { worker: 1, nsIp: '10.18.0.2', instanceIp: '10.30.1.1' };
const B4: StaticInstance = { worker: 2, nsIp: '10.18.1.2', instanceIp: '10.30.1.2' };
const C4: StaticInstance = { worker: 1, nsIp: '10.18.0.3', instanceIp: '10.30.1.3' };
const A6: StaticInstance = { worker: 1, nsIp: 'fdc0:18::2', instanceIp: 'fdc0:30::1:1' };
const B6: StaticInstance = { worker: 2, nsIp: 'fdc0:18:1::2', instanceIp: 'fdc0:30::1:2' };
const C6: StaticInstance = { worker: 1, nsIp: 'fdc0:18::3', instanceIp: 'fdc0:30::1:3' };
const S4 = '10.30.0.10';
const S6 = 'fdc0:30::10';
const L4 = '10.30.0.11';
const L6 = 'fdc0:30::11';

interface World { net: FakeNetwork; w1: Datapath; w2: Datapath; d1: FakeDevice; d2: FakeDevice; s2: FakeSocket }

function world(vnet1: boolean, vnet2: boolean, gro = false): World {
  const net = new FakeNetwork();
  const instances = [A4, B4, C4, A6, B6, C6];
  const services = [{ ip: S4, instances: [B4] }, { ip: S6, instances: [B6] }, { ip: L4, instances: [C4] }, { ip: L6, instances: [C6] }];
  const eps = new Map([[1, { host: '198.18.0.1', port: 50103 }], [2, { host: '198.18.0.2', port: 50103 }]]);
  const sockets: FakeSocket[] = [];
  const mk = (id: number, vnet: boolean): [Datapath, FakeDevice] => {
    const dev = new FakeDevice(vnet);
    const socket = net.socket(`198.18.0.${id}`, 50103, true, gro);
    sockets.push(socket);
    const dp = new Datapath({
      device: dev,
      socket,
      table: new StaticTable({ selfId: id, instances, services }),
      codec: new TunnelCodec({ selfId: id, keys: new Map([[1, key]]), keyId: 1, peers: { has: (p) => p === 1 || p === 2 }, maxDatagram: 1472 }),
      peers: { endpoint: (p) => eps.get(p) },
      mtu: 1400,
    });
    return [dp, dev];
  };
  const [w1, d1] = mk(1, vnet1);
  const [w2, d2] = mk(2, vnet2);
  return { net, w1, w2, d1, d2, s2: sockets[1] };
}

function plain(dev: FakeDevice, p: Uint8Array): Uint8Array {
  if (!dev.vnetHdr) return p;
  if (p[0] & 1) return completePartial(p);
  return p.slice(VNET_HDR_LEN);
}

function feed(dev: FakeDevice, pkt: Uint8Array): void {
  if (!dev.vnetHdr) { dev.inbox.push(pkt); return; }
  const v = new Uint8Array(VNET_HDR_LEN + pkt.length);
  v.set(pkt, VNET_HDR_LEN);
  dev.inbox.push(v);
}

function srcDst(p: Uint8Array): [string, string] {
  const m = new PacketInfo();
  assert.ok(parsePacket(p, 0, p.length, m));
  const a = m.family === 4 ? 4 : 16;
  const hex = (o: number) => Buffer.from(p.subarray(o, o + a)).toString('hex');
  return [hex(m.srcOff), hex(m.dstOff)];
}
const hexOf = (s: string) => Buffer.from(addr(s)).toString('hex');

const modes: Array<[boolean, boolean]> = [[false, false], [true, true], [true, false], [false, true]];
for (const [v1, v2] of modes) {
  for (const family of [4, 6] as const) {
    for (const proto of [Proto.TCP, Proto.UDP, family === 4 ? Proto.ICMP : Proto.ICMPV6]) {
      test(`remote service round trip IPv${family} proto ${proto} (vnet ${v1}/${v2})`, () => {
        const { w1, w2, d1, d2 } = world(v1, v2);
        const [A, B, S] = family === 4 ? [A4, B4, S4] : [A6, B6, S6];
        feed(d1, build({ family, proto, src: A.nsIp, dst: S, sport: 33000, dport: 5201, payload: 300 }));
        w1.pumpDevice();
        w2.pumpSocket();
        assert.equal(d2.written.length, 1, 'delivered on worker 2');
        const fwd = plain(d2, d2.written[0]);
        assert.ok(checksumsOk(fwd));
        assert.deepEqual(srcDst(fwd), [hexOf(A.instanceIp), hexOf(B.nsIp)], 'src → caller instance IP, dst → B namespace');
        // B answers to the caller's instance IP.
        const icmp = proto === Proto.ICMP || proto === Proto.ICMPV6;
        // An echo reply carries the request's identifier in both port slots.
        feed(d2, build({ family, proto, src: B.nsIp, dst: A.instanceIp, sport: icmp ? 33000 : 5201, dport: 33000, payload: 100,
          icmpType: family === 4 ? 0 : 129 }));
        w2.pumpDevice();
        w1.pumpSocket();
        assert.equal(d1.written.length, 1, 'reply delivered on worker 1');
        const back = plain(d1, d1.written[0]);
        assert.ok(checksumsOk(back));
        assert.deepEqual(srcDst(back), [hexOf(S), hexOf(A.nsIp)], 'the caller sees the service IP it dialled');
      });
    }
  }
}

for (const [family, gso] of [[4, GSO_TCPV4], [6, GSO_TCPV6]] as const) {
  for (const v2 of [true, false]) {
    test(`a TSO super-packet IPv${family} crosses whole and arrives ${v2 ? 'as one' : 'segmented'}`, () => {
      const { w1, w2, d1, d2 } = world(true, v2);
      const [A, B, S] = family === 4 ? [A4, B4, S4] : [A6, B6, S6];
      const sp = build({ family, proto: Proto.TCP, src: A.nsIp, dst: S, payload: 60000 });
      d1.inbox.push(toPartial(sp, gso, 1448));
      w1.pumpDevice();
      while (w2.pumpSocket() > 0) { /* drain */ }
      if (v2) {
        assert.equal(d2.written.length, 1);
        const got = completePartial(d2.written[0]);
        assert.ok(checksumsOk(got));
        assert.deepEqual(srcDst(got), [hexOf(A.instanceIp), hexOf(B.nsIp)]);
        assert.equal(got.length, sp.length);
      } else {
        assert.equal(d2.written.length, Math.ceil(60000 / 1448));
        for (const s of d2.written) {
          assert.ok(checksumsOk(s));
          assert.deepEqual(srcDst(s), [hexOf(A.instanceIp), hexOf(B.nsIp)]);
        }
      }
    });
  }
}

for (const v2 of [true, false]) {
  test(`with GRO receives, back-to-back super-packets and small packets arrive whole and in order (vnet ${v2})`, () => {
    const { w1, w2, d1, d2 } = world(true, v2, true);
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 4; i++) {
      const sp = build({ family: 4, proto: Proto.TCP, src: A4.nsIp, dst: S4, sport: 40000 + i, payload: 65000 - i * 7000 });
      for (let j = 20 + 20; j < sp.length; j++) sp[j] = (j * 31 + i) & 0xff;
      sent.push(sp);
      d1.inbox.push(toPartial(sp, GSO_TCPV4, 1448));
      feed(d1, build({ family: 4, proto: Proto.UDP, src: A4.nsIp, dst: S4, sport: 1000 + i, dport: 53, payload: 100 }));
    }
    w1.pumpDevice();
    while (w2.pumpSocket() > 0) { /* drain */ }
    const all = d2.written.map((p) => plain(d2, p));
    const big = all.filter((p) => p[9] === Proto.TCP);
    const small = all.filter((p) => p[9] === Proto.UDP);
    assert.equal(small.length, 4);
    if (v2) {
      assert.equal(big.length, 4);
      big.forEach((got, i) => {
        assert.ok(checksumsOk(got), `super-packet ${i}`);
        assert.deepEqual(srcDst(got), [hexOf(A4.instanceIp), hexOf(B4.nsIp)]);
        assert.deepEqual(got.subarray(40), sent[i].subarray(40), `payload of super-packet ${i}`);
      });
    } else {
      const bytes = big.reduce((t, p) => t + p.length - 40, 0);
      assert.equal(bytes, sent.reduce((t, p) => t + p.length - 40, 0));
      for (const p of big) assert.ok(checksumsOk(p));
    }
    assert.equal(w2.stats()[Counter.Errors], 0);
  });
}

test('with GRO receives, a peer whose datagram size differs is still understood', () => {
  const { net, w2, d2 } = world(true, true, true);
  const instances = [A4, B4, C4, A6, B6, C6];
  const services = [{ ip: S4, instances: [B4] }];
  const base = Date.now() * 1000;
  for (const [i, maxDatagram] of [1472, 900, 1472, 600].entries()) {
    const dev = new FakeDevice(true);
    const w1 = new Datapath({
      device: dev,
      socket: net.socket('198.18.0.1', 50200 + i, true, true),
      table: new StaticTable({ selfId: 1, instances, services }),
      codec: new TunnelCodec({ selfId: 1, keys: new Map([[1, key]]), keyId: 1, peers: { has: () => true }, maxDatagram, firstCounter: base + i * 1000 }),
      peers: { endpoint: () => ({ host: '198.18.0.2', port: 50103 }) },
    });
    const before = d2.written.length;
    dev.inbox.push(toPartial(build({ family: 4, proto: Proto.TCP, src: A4.nsIp, dst: S4, payload: 50000 }), GSO_TCPV4, 1448));
    w1.pumpDevice();
    while (w2.pumpSocket() > 0) { /* drain */ }
    assert.equal(d2.written.length, before + 1, `a batch in ${maxDatagram}-byte datagrams`);
    assert.ok(checksumsOk(completePartial(d2.written[before])));
  }
});

test('with GRO receives, a tampered datagram spoils its batch and is counted', () => {
  const { net, w1, w2, d1, d2 } = world(true, true, true);
  d1.inbox.push(toPartial(build({ family: 4, proto: Proto.TCP, src: A4.nsIp, dst: S4, payload: 30000 }), GSO_TCPV4, 1448));
  w1.pumpDevice();
  const mid = net.wire[Math.floor(net.wire.length / 2)].data;
  mid[mid.length - 1] ^= 1;
  while (w2.pumpSocket() > 0) { /* drain */ }
  assert.equal(d2.written.length, 0);
  assert.equal(w2.stats()[`tunnel_drop_${Drop.BadTag}`], 1);
});

for (const family of [4, 6] as const) {
  test(`a local target short-circuits without the tunnel, IPv${family}`, () => {
    const { net, w1, d1 } = world(false, false);
    const [A, C, L] = family === 4 ? [A4, C4, L4] : [A6, C6, L6];
    feed(d1, build({ family, proto: Proto.UDP, src: A.nsIp, dst: L, sport: 1000, dport: 2000, payload: 10 }));
    w1.pumpDevice();
    assert.equal(net.wire.length, 0);
    assert.deepEqual(srcDst(d1.written[0]), [hexOf(A.instanceIp), hexOf(C.nsIp)]);
    feed(d1, build({ family, proto: Proto.UDP, src: C.nsIp, dst: A.instanceIp, sport: 2000, dport: 1000, payload: 10 }));
    w1.pumpDevice();
    const back = d1.written[1];
    assert.ok(checksumsOk(back));
    assert.deepEqual(srcDst(back), [hexOf(L), hexOf(A.nsIp)]);
  });
}

test('a datagram with a wrong key changes nothing and is counted', () => {
  const { net, w2, d2 } = world(false, false);
  const evil = new TunnelCodec({ selfId: 1, keys: new Map([[1, randomBytes(32)]]), keyId: 1, peers: { has: () => true }, maxDatagram: 1472 });
  const sock = net.socket('198.18.0.66', 50103);
  const plan = new TxPlan();
  const p = build({ family: 4, proto: Proto.UDP, src: A4.instanceIp, dst: B4.nsIp, payload: 20 });
  evil.encode(TunnelType.Data, 0, p, 0, p.length, plan);
  sock.send({ host: '198.18.0.2', port: 50103 }, plan);
  w2.pumpSocket();
  assert.equal(d2.written.length, 0);
  assert.equal(w2.codec.drops.get(Drop.BadTag), 1);
});

test('probes measure RTT to a peer', () => {
  const { w1, w2 } = world(false, false);
  const rtts: Array<[number, number]> = [];
  w1.onRtt((peer, ms) => rtts.push([peer, ms]));
  assert.ok(w1.probe(2));
  w2.pumpSocket();
  w1.pumpSocket();
  assert.equal(rtts.length, 1);
  assert.equal(rtts[0][0], 2);
  assert.ok(rtts[0][1] >= 0);
  assert.equal(w1.probe(99), false, 'unknown peer');
});

test('a packet to an unknown service is dropped and counted', () => {
  const { w1, d1, net } = world(false, false);
  feed(d1, build({ family: 4, proto: Proto.UDP, src: A4.nsIp, dst: '10.30.9.9', payload: 5 }));
  w1.pumpDevice();
  assert.equal(net.wire.length, 0);
  assert.equal(w1.stats()[Counter.NoRoute], 1);
});

for (const v2 of [false, true]) {
  test(`small packets read in one pump share a tunnel batch and all arrive in order (vnet ${v2})`, () => {
    const { net, w1, w2, d1, d2 } = world(false, v2);
    for (let i = 0; i < 60; i++) {
      const family = i % 2 === 0 ? 4 : 6;
      const [A, S] = family === 4 ? [A4, S4] : [A6, S6];
      feed(d1, build({ family, proto: Proto.UDP, src: A.nsIp, dst: S, sport: 1000 + i, dport: 53, payload: 1300 }));
    }
    w1.pumpDevice();
    const batches = w1.stats()[Counter.TunnelTx];
    assert.ok(batches <= 2, `${batches} tunnel batches for 60 packets`);
    assert.ok(net.wire.length > 0);
    while (w2.pumpSocket() > 0) { /* drain */ }
    assert.equal(d2.written.length, 60);
    d2.written.forEach((p, i) => {
      const q = plain(d2, p);
      assert.ok(checksumsOk(q), `packet ${i}`);
      const m = new PacketInfo();
      assert.ok(parsePacket(q, 0, q.length, m));
      assert.equal(m.sport, 1000 + i, 'order kept');
    });
    assert.equal(w1.stats()[Counter.Coalesced], 60);
  });
}

for (const family of [4, 6] as const) {
  test(`a SYN crossing the overlay leaves with its MSS clamped to the inner MTU, IPv${family}`, () => {
    const { w1, w2, d1, d2 } = world(true, false);
    const [A, S] = family === 4 ? [A4, S4] : [A6, S6];
    feed(d1, build({ family, proto: Proto.TCP, src: A.nsIp, dst: S, tcpFlags: 0x02, tcpOptions: [2, 4, 0x22, 0x38] }));
    w1.pumpDevice();
    w2.pumpSocket();
    const got = d2.written[0];
    assert.ok(checksumsOk(got));
    const m = new PacketInfo();
    assert.ok(parsePacket(got, 0, got.length, m));
    assert.equal((got[m.l4 + 22] << 8) | got[m.l4 + 23], family === 4 ? 1360 : 1340);
  });
}

test('packets wait in a bounded queue while a route is pending, then go out in order', () => {
  const net = new FakeNetwork();
  const dev = new FakeDevice(false);
  const eps = new Map([[2, { host: '198.18.0.2', port: 50103 }]]);
  let known = false;
  let ready: () => void = () => {};
  const table = {
    outbound: (_b: Uint8Array, _m: unknown, out: { peer: number; rewriteSrc: boolean; rewriteDst: boolean }) => {
      if (!known) return 3 as const; // Pending
      out.peer = 2; out.rewriteSrc = false; out.rewriteDst = false;
      return 1 as const; // Tunnel
    },
    inbound: () => 0 as const,
    onReady: (l: () => void) => { ready = l; },
  };
  const dp = new Datapath({
    device: dev, socket: net.socket('198.18.0.1', 50103), table,
    codec: new TunnelCodec({ selfId: 1, keys: new Map([[1, key]]), keyId: 1, peers: { has: () => true }, maxDatagram: 1472 }),
    peers: { endpoint: (p) => eps.get(p) }, pendingLimit: 10,
  });
  const rx = new TunnelCodec({ selfId: 2, keys: new Map([[1, key]]), keyId: 1, peers: { has: () => true }, maxDatagram: 1472 });
  for (let i = 0; i < 12; i++) dev.inbox.push(build({ family: 4, proto: Proto.UDP, src: A4.nsIp, dst: '10.30.7.7', sport: 100 + i, payload: 20 }));
  dp.pumpDevice();
  assert.equal(net.wire.length, 0, 'nothing leaves before the route is known');
  assert.equal(dp.stats()[Counter.Pending], 10);
  assert.equal(dp.stats()[Counter.PendingDrop], 2);
  known = true;
  ready();
  const batch = newRxBatch();
  const ports: number[] = [];
  for (const w of net.wire) {
    if (!rx.decode(w.data, 0, w.data.length, batch)) continue;
    const end = batch.off + batch.len;
    for (let o = batch.off; o < end;) {
      const m = new PacketInfo();
      const l = ((batch.buf[o + 2] << 8) | batch.buf[o + 3]);
      assert.ok(parsePacket(batch.buf, o, l, m));
      ports.push(m.sport);
      o += l;
    }
  }
  assert.deepEqual(ports, [100, 101, 102, 103, 104, 105, 106, 107, 108, 109]);
});

test('a table that throws costs the packet, not the loop', () => {
  const net = new FakeNetwork();
  const dev = new FakeDevice(false);
  let calls = 0;
  const table = {
    outbound: () => { calls++; throw new Error('table bug'); },
    inbound: () => { throw new Error('table bug'); },
    onReady: () => {},
  };
  const dp = new Datapath({
    device: dev, socket: net.socket('198.18.0.1', 50103), table,
    codec: new TunnelCodec({ selfId: 1, keys: new Map([[1, key]]), keyId: 1, peers: { has: () => true }, maxDatagram: 1472 }),
    peers: { endpoint: () => undefined },
  });
  for (let i = 0; i < 3; i++) dev.inbox.push(build({ family: 4, proto: Proto.UDP, src: A4.nsIp, dst: S4, payload: 5 }));
  assert.equal(dp.pumpDevice(), 3);
  assert.equal(calls, 3);
  assert.equal(dp.stats()[Counter.Errors], 3);
  assert.equal(dp.lastError, 'table bug');
});

function fragment(p: Uint8Array, chunk: number): Uint8Array[] {
  const v4 = p[0] >> 4 === 4;
  const hl = v4 ? 20 : 40;
  const proto = v4 ? p[9] : p[6];
  const body = p.subarray(hl);
  const out: Uint8Array[] = [];
  for (let o = 0; o < body.length; o += chunk) {
    const part = body.subarray(o, Math.min(o + chunk, body.length));
    const more = o + chunk < body.length;
    if (v4) {
      const f = new Uint8Array(20 + part.length);
      f.set(p.subarray(0, 20));
      f.set(part, 20);
      const dv = new DataView(f.buffer);
      dv.setUint16(2, f.length);
      dv.setUint16(4, 0x4321);
      dv.setUint16(6, (more ? 0x2000 : 0) | (o / 8));
      dv.setUint16(10, 0);
      let s = 0;
      for (let i = 0; i < 20; i += 2) s += dv.getUint16(i);
      while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
      dv.setUint16(10, ~s & 0xffff);
      out.push(f);
    } else {
      const f = new Uint8Array(48 + part.length);
      f.set(p.subarray(0, 40));
      f[6] = 44;
      const dv = new DataView(f.buffer);
      dv.setUint16(4, 8 + part.length);
      f[40] = proto;
      dv.setUint16(42, (o / 8) << 3 | (more ? 1 : 0));
      dv.setUint32(44, 0xabcdef01);
      f.set(part, 48);
      out.push(f);
    }
  }
  return out;
}

function reassemble(frags: Uint8Array[]): Uint8Array {
  const v4 = frags[0][0] >> 4 === 4;
  const hl = v4 ? 20 : 48;
  const body = frags.flatMap((f) => [...f.subarray(hl)]);
  const head = frags[0].slice(0, v4 ? 20 : 40);
  const p = new Uint8Array(head.length + body.length);
  p.set(head);
  p.set(body, head.length);
  const dv = new DataView(p.buffer);
  if (v4) {
    dv.setUint16(2, p.length); dv.setUint16(6, 0); dv.setUint16(10, 0);
    let s = 0;
    for (let i = 0; i < 20; i += 2) s += dv.getUint16(i);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    dv.setUint16(10, ~s & 0xffff);
  } else {
    p[6] = frags[0][40];
    dv.setUint16(4, body.length);
  }
  return p;
}

for (const family of [4, 6] as const) {
  for (const proto of [Proto.UDP, family === 4 ? Proto.ICMP : Proto.ICMPV6]) {
    test(`a fragmented IPv${family} datagram (proto ${proto}) crosses with every fragment rewritten`, () => {
      const { w1, w2, d1, d2 } = world(false, false);
      const [A, B, S] = family === 4 ? [A4, B4, S4] : [A6, B6, S6];
      const whole = build({ family, proto, src: A.nsIp, dst: S, sport: 5555, dport: 53, payload: 3000 });
      const frags = fragment(whole, 1200);
      assert.equal(frags.length, 3);
      for (const f of frags) d1.inbox.push(f);
      w1.pumpDevice();
      while (w2.pumpSocket() > 0) { /* drain */ }
      assert.equal(d2.written.length, 3);
      const back = reassemble(d2.written);
      assert.ok(checksumsOk(back), 'the reassembled datagram verifies');
      assert.deepEqual(srcDst(back), [hexOf(A.instanceIp), hexOf(B.nsIp)]);
      for (const f of d2.written) {
        const a = family === 4 ? 4 : 16;
        const so = family === 4 ? 12 : 8;
        assert.equal(Buffer.from(f.subarray(so, so + a)).toString('hex'), hexOf(A.instanceIp));
        assert.equal(Buffer.from(f.subarray(so + a, so + 2 * a)).toString('hex'), hexOf(B.nsIp));
      }
      assert.equal(w1.stats()[Counter.FragmentDrop], 0);
    });
  }
}

test('a later fragment whose first fragment was never seen is dropped and counted', () => {
  const { w1, d1, net } = world(false, false);
  const frags = fragment(build({ family: 4, proto: Proto.UDP, src: A4.nsIp, dst: S4, payload: 3000 }), 1200);
  d1.inbox.push(frags[1]);
  w1.pumpDevice();
  assert.equal(net.wire.length, 0);
  assert.equal(w1.stats()[Counter.FragmentDrop], 1);
});

test('a packet still waiting when routes change waits again, and goes out when its route is usable', () => {
  const net = new FakeNetwork();
  const dev = new FakeDevice(false);
  const eps = new Map([[2, { host: '198.18.0.2', port: 50103 }]]);
  let usable = false;
  let ready: () => void = () => {};
  const table = {
    outbound: (_b: Uint8Array, _m: unknown, out: { peer: number }) => {
      if (!usable) return 3 as const; // Pending: the service is known but has no instance yet
      out.peer = 2;
      return 1 as const; // Tunnel
    },
    inbound: () => 0 as const,
    onReady: (l: () => void) => { ready = l; },
  };
  const dp = new Datapath({
    device: dev, socket: net.socket('198.18.0.1', 50103), table,
    codec: new TunnelCodec({ selfId: 1, keys: new Map([[1, key]]), keyId: 1, peers: { has: () => true }, maxDatagram: 1472 }),
    peers: { endpoint: (p) => eps.get(p) },
  });
  dev.inbox.push(build({ family: 4, proto: Proto.UDP, src: A4.nsIp, dst: '10.30.7.7', payload: 20 }));
  dp.pumpDevice();
  ready(); // a route arrived, but still without an instance
  assert.equal(net.wire.length, 0);
  assert.equal(dp.stats()[Counter.PendingDrop], 0, 'the packet is not dropped on a retry');
  usable = true;
  ready(); // the instance appeared
  assert.equal(net.wire.length, 1, 'the queued packet goes out without being sent again');
  assert.equal(dp.stats()[Counter.Pending], 1, 'queued once');
});

test('packets whose route never comes expire from the pending queue', async () => {
  const net = new FakeNetwork();
  const dev = new FakeDevice(false);
  const table = { outbound: () => 3 as const, inbound: () => 0 as const, onReady: () => {} };
  const dp = new Datapath({
    device: dev, socket: net.socket('198.18.0.1', 50103), table,
    codec: new TunnelCodec({ selfId: 1, keys: new Map([[1, key]]), keyId: 1, peers: { has: () => true }, maxDatagram: 1472 }),
    peers: { endpoint: () => undefined }, pendingMaxMs: 20,
  });
  dev.inbox.push(build({ family: 4, proto: Proto.UDP, src: A4.nsIp, dst: '10.30.7.7', payload: 20 }));
  dp.pumpDevice();
  assert.equal(dp.stats()[Counter.Pending], 1);
  await new Promise((r) => setTimeout(r, 40));
  dp.pumpDevice();
  assert.equal(dp.stats()[Counter.PendingExpired], 1);
});

for (const family of [4, 6] as const) {
  for (const fromTarget of [true, false]) {
    test(`an ICMP error about a translated flow reaches the caller as an error about what it sent, IPv${family}${fromTarget ? '' : ' (from the far bridge)'}`, () => {
      const { w1, w2, d1, d2 } = world(false, false);
      const [A, B, S] = family === 4 ? [A4, B4, S4] : [A6, B6, S6];
      const sent = build({ family, proto: Proto.UDP, src: A.nsIp, dst: S, sport: 41000, dport: 9999, payload: 40 });
      d1.inbox.push(sent.slice());
      w1.pumpDevice();
      w2.pumpSocket();
      const atB = d2.written[0];
      const errSrc = fromTarget ? B.nsIp : (family === 4 ? '10.18.2.1' : 'fdc0:18:2::1');
      feed(d2, icmpErrorAbout(family, errSrc, A.instanceIp, atB));
      w2.pumpDevice();
      w1.pumpSocket();
      assert.equal(d1.written.length, 1, 'the error is delivered to the caller');
      const got = d1.written[0];
      assert.ok(checksumsOk(got), 'outer checksums (IPv4 header, ICMP) verify');
      const a = family === 4 ? 4 : 16;
      const hx = (o: number) => Buffer.from(got.subarray(o, o + a)).toString('hex');
      const [so, dso] = family === 4 ? [12, 16] : [8, 24];
      assert.equal(hx(dso), hexOf(A.nsIp));
      assert.equal(hx(so), fromTarget ? hexOf(S) : hexOf(errSrc));
      const inner = got.slice(family === 4 ? 28 : 48);
      assert.deepEqual(inner, sent, 'the embedded packet is exactly what the caller sent');
      assert.equal(w1.stats()[Counter.IcmpErrors], 1);
    });
  }
}

test('an answer the kernel queued inside the TUN write leaves in the same socket pump', () => {
  const { w1, w2, d1, d2 } = world(true, true);
  // Worker 2's kernel answers the echo request inside the write, as an ICMP responder does.
  const write = d2.write.bind(d2);
  d2.write = (buf, off, len) => {
    const ok = write(buf, off, len);
    feed(d2, build({ family: 4, proto: Proto.ICMP, src: B4.nsIp, dst: A4.instanceIp, sport: 33000, dport: 33000, payload: 56, icmpType: 0 }));
    return ok;
  };
  feed(d1, build({ family: 4, proto: Proto.ICMP, src: A4.nsIp, dst: S4, sport: 33000, dport: 33000, payload: 56 }));
  w1.pumpDevice();
  assert.equal(w2.pumpSocketAndReplies(), 1);
  assert.equal(d2.written.length, 1, 'request delivered on worker 2');
  assert.equal(d2.inbox.length, 0, 'the answer was read without a device pump');
  w1.pumpSocket();
  assert.equal(d1.written.length, 1, 'answer delivered on worker 1');
  assert.deepEqual(srcDst(plain(d1, d1.written[0])), [hexOf(S4), hexOf(A4.nsIp)]);
});

test('a socket pump that wrote nothing into the TUN does not read it', () => {
  const { w2, d2 } = world(true, true);
  feed(d2, build({ family: 4, proto: Proto.ICMP, src: B4.nsIp, dst: A4.instanceIp, sport: 33000, dport: 33000, payload: 56, icmpType: 0 }));
  assert.equal(w2.pumpSocketAndReplies(), 0);
  assert.equal(d2.inbox.length, 1, 'left for the readiness callback');
});

const udpTo = (sport: number) => build({ family: 4, proto: Proto.UDP, src: A4.nsIp, dst: S4, sport, dport: 7, payload: 20 });

test('after a lone packet, the next pump sends its first packet before reading the device again', () => {
  const { net, w1, d1 } = world(true, true);
  // How many datagrams had left each time the device said it had nothing more.
  const sentAtEmpty: number[] = [];
  const read = d1.read.bind(d1);
  d1.read = (buf, off, max) => {
    const n = read(buf, off, max);
    if (n < 0) sentAtEmpty.push(net.wire.length);
    return n;
  };
  feed(d1, udpTo(100));
  w1.pumpDevice(); // a fresh datapath coalesces until the device is empty
  feed(d1, udpTo(101));
  w1.pumpDevice(); // after a lone pump: sent first, then the read that finds nothing
  assert.deepEqual(sentAtEmpty, [0, 2]);
  assert.equal(w1.stats()[Counter.TunnelTx], 2);
});

test('under load plain packets still share a batch; after a lone one only the first goes alone', () => {
  const { net, w1, d1 } = world(true, true);
  const pump = (ports: number[]): number => {
    const before = net.wire.length;
    for (const p of ports) feed(d1, udpTo(p));
    w1.pumpDevice();
    return net.wire.length - before;
  };
  assert.equal(pump([1, 2, 3, 4, 5]), 1, 'a fresh datapath: one batch');
  assert.equal(pump([6, 7, 8, 9, 10]), 1, 'after a full pump: one batch');
  assert.equal(pump([11]), 1);
  assert.equal(pump([12, 13, 14, 15, 16]), 2, 'after a lone pump: the first alone, the rest as one batch');
  assert.equal(pump([17, 18, 19]), 1, 'load again: one batch');
  assert.equal(w1.stats()[Counter.DevRx], 19, 'nothing lost');
});

test('the answer to a lone request leaves before the socket is read to its end', () => {
  const { net, w1, w2, d1, d2, s2 } = world(true, true);
  // Worker 2's kernel answers the echo request inside the write, as an ICMP responder does.
  const write = d2.write.bind(d2);
  d2.write = (buf, off, len) => {
    const ok = write(buf, off, len);
    feed(d2, build({ family: 4, proto: Proto.ICMP, src: B4.nsIp, dst: A4.instanceIp, sport: 33000, dport: 33000, payload: 56, icmpType: 0 }));
    return ok;
  };
  const sentAtEmpty: number[] = [];
  const recv = s2.recv.bind(s2);
  s2.recv = (buf, off, max, rx) => {
    const n = recv(buf, off, max, rx);
    if (n < 0) sentAtEmpty.push(net.wire.length);
    return n;
  };
  feed(d1, build({ family: 4, proto: Proto.ICMP, src: A4.nsIp, dst: S4, sport: 33000, dport: 33000, payload: 56 }));
  w1.pumpDevice();
  assert.equal(net.wire.length, 1, 'the request is on the wire');
  assert.equal(w2.pumpSocketAndReplies(), 1);
  assert.deepEqual(sentAtEmpty, [2], 'the answer was on the wire when the socket was found empty');
  w1.pumpSocket();
  assert.equal(d1.written.length, 1, 'answer delivered on worker 1');
});
