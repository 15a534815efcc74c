// 1 M random and mutated packets through parsing, translation, segmentation and tunnel decoding:
// nothing may throw, and every rejected input is counted rather than lost silently.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Proto } from '../../../netstack/table.ts';
import { Datapath } from '../../../netstack/datapath.ts';
import { FakeDevice, FakeNetwork } from '../../../netstack/fakes.ts';
import { StaticTable } from '../../../netstack/static-table.ts';
import { TunnelCodec, TunnelType, newRxBatch } from '../../../netstack/tunnel.ts';
import { TxPlan } from '../../../native/io.ts';
import { GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4 } from '../../../netstack/vnet.ts';
import { evpAead } from '../../../netstack/aead.ts';
import { build, toPartial } from '../../../harness/packet-build.ts';
import { fuzzRandom } from '../../support/fuzz-random.ts';

const rng = fuzzRandom('netstack-fuzz');
const rnd = rng.int;

const key = randomBytes(32);
const instances = [
  { worker: 1, nsIp: '10.18.0.2', instanceIp: '10.30.1.1' }, { worker: 2, nsIp: '10.18.1.2', instanceIp: '10.30.1.2' },
  { worker: 1, nsIp: 'fdc0:18::2', instanceIp: 'fdc0:30::1:1' }, { worker: 2, nsIp: 'fdc0:18:1::2', instanceIp: 'fdc0:30::1:2' },
];
const services = [{ ip: '10.30.0.10', instances: [instances[1]] }, { ip: 'fdc0:30::10', instances: [instances[3]] }];

function seeds(): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const [family, src, dst] of [[4, '10.18.0.2', '10.30.0.10'], [6, 'fdc0:18::2', 'fdc0:30::10']] as const) {
    for (const proto of [Proto.TCP, Proto.UDP, family === 4 ? Proto.ICMP : Proto.ICMPV6]) {
      out.push(build({ family, proto, src, dst, payload: 40 }));
      out.push(build({ family, proto, src, dst, payload: 3000 }));
    }
    // ICMP errors about a flow (type 3 / 1), so mutations reach the embedded-packet rewrite too.
    const inner = build({ family, proto: Proto.UDP, src: dst, dst: src, payload: 20 });
    out.push(build({ family, proto: family === 4 ? Proto.ICMP : Proto.ICMPV6, src, dst, payload: inner, icmpType: family === 4 ? 3 : 1 }));
  }
  return out;
}

function mutate(p: Uint8Array): Uint8Array {
  const q = p.slice(0, rnd(4) === 0 ? rnd(p.length + 1) : p.length);
  const flips = 1 + rnd(4);
  for (let i = 0; i < flips && q.length > 0; i++) q[rnd(q.length)] = rnd(256);
  return q;
}

test('1 M random and mutated packets through decode and translate throw nothing', () => {
  const net = new FakeNetwork();
  const eps = new Map([[1, { host: 'h1', port: 1 }], [2, { host: 'h2', port: 1 }]]);
  const devs: FakeDevice[] = [];
  const dps: Datapath[] = [];
  for (const [id, vnet] of [[1, false], [1, true], [2, false], [2, true]] as const) {
    const dev = new FakeDevice(vnet);
    devs.push(dev);
    dps.push(new Datapath({
      device: dev, socket: net.socket(`h${id}${vnet ? 'v' : ''}`, 1),
      table: new StaticTable({ selfId: id, instances, services }),
      codec: new TunnelCodec({ selfId: id, keys: new Map([[1, key]]), keyId: 1, peers: { has: (p) => p === 1 || p === 2 }, maxDatagram: 1400 }),
      peers: { endpoint: (p) => eps.get(p) },
    }));
  }
  const base = seeds();
  const sender = new TunnelCodec({ selfId: 1, keys: new Map([[1, key]]), keyId: 1, peers: { has: () => true }, maxDatagram: 1400 });
  const plan = new TxPlan();
  const dgram = new Uint8Array(1500);
  // The receiving decoder uses the OpenSSL path, so garbage reaches it too.
  const rxDecoder = new TunnelCodec({ selfId: 2, keys: new Map([[1, key]]), keyId: 1, peers: { has: (p) => p === 1 }, maxDatagram: 1400,
    aeadFactory: evpAead });
  const batch = newRxBatch();
  const N = 1_000_000;
  let accepted = 0;
  for (let i = 0; i < N; i++) {
    const kind = i % 4;
    if (kind === 0) {
      // Random bytes, sometimes with a plausible version nibble.
      const len = rnd(120);
      const p = new Uint8Array(len);
      for (let j = 0; j < len; j++) p[j] = rnd(256);
      if (len > 0 && rnd(2)) p[0] = rnd(2) ? 0x45 : 0x60;
      const d = rnd(2);
      devs[d].inbox.push(d === 1 ? Uint8Array.of(...p.subarray(0, 10), ...p) : p);
      dps[d].pumpDevice();
    } else if (kind === 1) {
      // A mutated valid packet, plain or offloaded with made-up GSO fields.
      const p = mutate(base[rnd(base.length)]);
      if (rnd(2) && p.length > 40) {
        const gso = [0, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, rnd(256)][rnd(5)];
        let v: Uint8Array;
        try { v = toPartial(p, gso, rnd(3000)); } catch { continue; }
        if (rnd(3) === 0) v[rnd(10)] = rnd(256);
        devs[1].inbox.push(v);
        dps[1].pumpDevice();
      } else {
        devs[0].inbox.push(p);
        dps[0].pumpDevice();
      }
    } else if (kind === 2) {
      // A valid tunnel batch whose datagrams are then mutated, delivered to the decoder directly.
      const p = base[rnd(base.length)];
      sender.encode(TunnelType.Data, rnd(4), p, 0, p.length, plan);
      for (let s = 0; s < plan.segments; s++) {
        const n = plan.copySegment(s, dgram);
        if (rnd(2)) dgram[rnd(n)] = rnd(256);
        const len = rnd(8) === 0 ? rnd(n + 1) : n;
        if (rxDecoder.decode(dgram, 0, len, batch)) accepted++;
      }
    } else {
      // Whatever is on the fake wire (valid batches from the datapaths) mutated and fed to the peers.
      const w = net.wire.shift();
      if (!w) continue;
      const d = mutate(w.data);
      const target = rnd(2) === 0 ? 2 : 3;
      (net as unknown as { deliver(to: string, d: Uint8Array): void }).deliver(`h2${target === 3 ? 'v' : ''}:1`, d);
      dps[target].pumpSocket();
      net.wire.length = Math.min(net.wire.length, 64);
    }
    if (devs[0].written.length > 100) for (const d of devs) d.written.length = 0;
  }
  assert.ok(accepted > 0, 'unmutated batches still decode');
  const s = dps[0].stats();
  assert.ok(s.drop_unparsable > 0, 'garbage is counted');
});
