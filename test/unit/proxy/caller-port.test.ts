// One caller port dialling two addresses of one instance at once, through two datapaths (fake device
// and network) with the semantic table: the second flow leaves with another source port, and what comes
// back for it (replies, ICMP errors) reaches the caller on its own port, from the address it dialled,
// with every checksum valid.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Datapath } from '../../../netstack/datapath.ts';
import { FakeDevice, FakeNetwork } from '../../../netstack/fakes.ts';
import { TunnelCodec } from '../../../netstack/tunnel.ts';
import { PacketInfo, parsePacket } from '../../../netstack/packet.ts';
import { Proto } from '../../../netstack/table.ts';
import { VNET_HDR_LEN } from '../../../netstack/vnet.ts';
import { SemanticTable } from '../../../proxy/semantic-table.ts';
import { StaticRouteSource } from '../../../proxy/static-route-source.ts';
import { StaticRtt } from '../../../proxy/rtt.ts';
import { ipString } from '../../../proxy/address-map.ts';
import type { ServiceRoute } from '../../../proxy/route-messages.ts';
import { build, checksumsOk, completePartial, icmpErrorAbout } from '../../../harness/packet-build.ts';

const ROUTE: ServiceRoute = {
  service_id: 's1', name: 'app.ans.s1.sns', rr_ip: '10.30.0.2', rr_ip_v6: 'fdc0:30::2',
  closest_ip: '10.30.0.3', closest_ip_v6: 'fdc0:30::3', default_policy: 'rr', ports: [{ port: 9999, proto: 'udp' }],
  instances: [{
    n: 0, instance_ip: '10.30.1.10', instance_ip_v6: 'fdc0:30::1:10', ns_ip: '10.18.2.10', ns_ip_v6: 'fdc0:18:2::10',
    worker_id: 'w2', cluster_id: 'c1', tunnel_endpoint: '198.18.0.2:50103', healthy: true,
  }],
};
const A = { ns_ip: '10.18.1.2', ns_ip_v6: 'fdc0:18:1::2', instance_ip: '10.30.9.1', instance_ip_v6: 'fdc0:30::9:1' };
const B = { ns_ip: '10.18.2.10', ns_ip_v6: 'fdc0:18:2::10', instance_ip: '10.30.1.10', instance_ip_v6: 'fdc0:30::1:10' };

function plain(dev: FakeDevice, p: Uint8Array): Uint8Array {
  if (!dev.vnetHdr) return p;
  return p[0]! & 1 ? completePartial(p) : p.slice(VNET_HDR_LEN);
}

function feed(dev: FakeDevice, pkt: Uint8Array): void {
  if (!dev.vnetHdr) { dev.inbox.push(pkt); return; }
  const v = new Uint8Array(VNET_HDR_LEN + pkt.length);
  v.set(pkt, VNET_HDR_LEN);
  dev.inbox.push(v);
}

function view(p: Uint8Array): { src: string; dst: string; sport: number; dport: number } {
  const m = new PacketInfo();
  assert.ok(parsePacket(p, 0, p.length, m));
  const a = m.family === 4 ? 4 : 16;
  return { src: ipString(p.subarray(m.srcOff, m.srcOff + a), 0, m.family), dst: ipString(p.subarray(m.dstOff, m.dstOff + a), 0, m.family), sport: m.sport, dport: m.dport };
}

for (const family of [4, 6] as const) {
  for (const proto of [Proto.TCP, Proto.UDP]) {
    for (const vnet of [false, true]) {
      test(`IPv${family} ${proto === Proto.TCP ? 'TCP' : 'UDP'}${vnet ? ' (vnet)' : ''}: two dials from one port to one instance both work, ICMP errors included`, async () => {
        const v = (a4: string, a6: string): string => (family === 4 ? a4 : a6);
        const key = randomBytes(32);
        const net = new FakeNetwork();
        const source = new StaticRouteSource([ROUTE]);
        const eps = new Map([[1, { host: '198.18.0.1', port: 50103 }], [2, { host: '198.18.0.2', port: 50103 }]]);
        const mk = (id: number, local: typeof A, dev: FakeDevice): [Datapath, SemanticTable] => {
          const table = new SemanticTable({ workerId: `w${id}`, link: source.link(`w${id}`), rtt: new StaticRtt(), peerOf: (w) => Number(w.slice(1)) });
          table.addLocalInstance(local);
          const dp = new Datapath({
            device: dev, socket: net.socket(`198.18.0.${id}`, 50103, true), table, peers: { endpoint: (p) => eps.get(p) },
            codec: new TunnelCodec({ selfId: id, keys: new Map([[1, key]]), keyId: 1, peers: { has: (p) => p === 1 || p === 2 }, maxDatagram: 1472 }),
          });
          return [dp, table];
        };
        const d1 = new FakeDevice(vnet), d2 = new FakeDevice(false);
        const [w1, t1] = mk(1, A, d1);
        const [w2, t2] = mk(2, B, d2);
        try {
          await t1.resolveName(ROUTE.name);
          const Ans = v(A.ns_ip, A.ns_ip_v6), IA = v(A.instance_ip, A.instance_ip_v6), Bns = v(B.ns_ip, B.ns_ip_v6);
          const rr = v(ROUTE.rr_ip!, ROUTE.rr_ip_v6!), closest = v(ROUTE.closest_ip!, ROUTE.closest_ip_v6!);
          const sent = [rr, closest].map((dst) => build({ family, proto, src: Ans, dst, sport: 41000, dport: 9999, payload: 64 }));
          for (const p of sent) feed(d1, p.slice());
          w1.pumpDevice();
          w2.pumpSocket();
          assert.equal(d2.written.length, 2, 'both flows reach the instance');
          const atB = d2.written.map((p) => view(p));
          for (const p of d2.written) assert.ok(checksumsOk(p));
          assert.deepEqual(atB[0], { src: IA, dst: Bns, sport: 41000, dport: 9999 });
          assert.notEqual(atB[1]!.sport, 41000, 'the second flow is a different tuple at the instance');
          assert.deepEqual({ ...atB[1]!, sport: 0 }, { src: IA, dst: Bns, sport: 0, dport: 9999 });

          // The instance answers both flows, then its host refuses the second one's next datagram.
          for (const at of atB) feed(d2, build({ family, proto, src: Bns, dst: IA, sport: 9999, dport: at.sport, payload: 20 }));
          feed(d2, icmpErrorAbout(family, Bns, IA, d2.written[1]!));
          w2.pumpDevice();
          w1.pumpSocket();
          assert.equal(d1.written.length, 3);
          const got = d1.written.map((p) => plain(d1, p));
          for (const p of got) assert.ok(checksumsOk(p), 'checksums verify at the caller');
          assert.deepEqual(view(got[0]!), { src: rr, dst: Ans, sport: 9999, dport: 41000 });
          assert.deepEqual(view(got[1]!), { src: closest, dst: Ans, sport: 9999, dport: 41000 });
          const inner = got[2]!.slice(family === 4 ? 28 : 48);
          assert.deepEqual(inner, sent[1], 'the ICMP error carries exactly what the caller sent');
          assert.equal(t1.stats.portRemaps, 1);
        } finally {
          w1.close(); w2.close(); t1.close(); t2.close(); source.close();
        }
      });
    }
  }
}
