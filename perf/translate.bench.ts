// `npm run bench -- translate`: the userspace cost of one packet through Canopy's outbound step —
// parse, table lookup (flow hit), address rewrite with incremental checksums, and the tunnel encode
// with its authentication tag — for a 64 kB TSO super-packet and for a small packet, in ns (mitata).
// The peer in the same run is a plain memory copy of the same bytes (what the kernel does at least
// once per packet anyway); ratios are translate ÷ copy.
import { measure } from 'mitata';
import { randomBytes } from 'node:crypto';
import { Verdict, newRewrite } from '../netstack/table.ts';
import { PacketInfo, parsePacket } from '../netstack/packet.ts';
import { applyRewrite } from '../netstack/rewrite.ts';
import { StaticTable } from '../netstack/static-table.ts';
import { TunnelCodec, TunnelFlag, TunnelType, newRxBatch } from '../netstack/tunnel.ts';
import { TxPlan } from '../native/io.ts';
import { GSO_TCPV4, VNET_HDR_LEN } from '../netstack/vnet.ts';
import { bestAead } from '../netstack/aead.ts';
import { build, toPartial } from '../harness/packet-build.ts';
import { orSmoke } from './smoke.ts';

const encrypt = process.argv.includes('--encrypt');
const key = randomBytes(32);
const instances = [{ worker: 1, nsIp: '10.18.1.2', instanceIp: '10.30.1.1' }, { worker: 2, nsIp: '10.18.2.2', instanceIp: '10.30.1.2' }];
const table = new StaticTable({ selfId: 1, instances, services: [{ ip: '10.30.0.10', instances: [instances[1]] }] });
const codec = new TunnelCodec({ selfId: 1, keys: new Map([[1, key]]), keyId: 1, peers: { has: () => true }, maxDatagram: 1472, encrypt, aeadFactory: bestAead });
const rxCodec = new TunnelCodec({ selfId: 2, keys: new Map([[1, key]]), keyId: 1, peers: { has: () => true }, maxDatagram: 1472, encrypt, aeadFactory: bestAead });
const m = new PacketInfo();
const rw = newRewrite();
const plan = new TxPlan();

function makeCase(pkt: Uint8Array, vnet: boolean): { buf: Uint8Array; tmpl: Uint8Array; len: number; off: number } {
  const v = vnet ? toPartial(pkt, GSO_TCPV4, 1348) : pkt;
  const buf = new Uint8Array(VNET_HDR_LEN + 65535 + 64);
  buf.set(v, 0);
  return { buf, tmpl: v.slice(0, 128), len: v.length, off: vnet ? VNET_HDR_LEN : 0 };
}

const big = makeCase(build({ family: 4, proto: 6, src: '10.18.1.2', dst: '10.30.0.10', payload: 64000 }), true);
const small = makeCase(build({ family: 4, proto: 17, src: '10.18.1.2', dst: '10.30.0.10', payload: 100 }), false);

function translateEncode(c: typeof big): void {
  c.buf.set(c.tmpl, 0); // undo the previous iteration's rewrite (headers only)
  if (!parsePacket(c.buf, c.off, c.len - c.off, m)) throw new Error('parse');
  if (table.outbound(c.buf, m, rw) !== Verdict.Tunnel) throw new Error('verdict');
  applyRewrite(c.buf, m, rw, c.off > 0);
  codec.encode(TunnelType.Data, c.off > 0 ? TunnelFlag.Vnet : 0, c.buf, 0, c.len, plan);
}

const scratch = new Uint8Array(70000);
const datagrams = new Uint8Array(70000);
const batch = newRxBatch();
function encodeDecode(c: typeof big): void {
  translateEncode(c);
  let ok = false;
  for (let s = 0; s < plan.segments; s++) {
    const n = plan.copySegment(s, datagrams);
    ok = rxCodec.decode(datagrams, 0, n, batch);
  }
  if (!ok) throw new Error('decode');
}

async function ns(name: string, fn: () => void): Promise<number> {
  const st = await measure(fn, { min_cpu_time: orSmoke(300e6, 2e6) });
  console.log(`${name.padEnd(36)} ${st.avg.toFixed(0).padStart(9)} ns/op`);
  return st.avg;
}

const superNs = await ns('translate+encode, 64 kB super-packet', () => translateEncode(big));
const smallNs = await ns('translate+encode, 128 B packet', () => translateEncode(small));
const superRt = await ns('… + decode on the receiver, 64 kB', () => encodeDecode(big));
const smallRt = await ns('… + decode on the receiver, 128 B', () => encodeDecode(small));
// Decode alone: a batch's datagrams back to back, as a GRO receive leaves them. Batches are
// pre-encoded (fresh counters) and the receiver is renewed before counters repeat, so the replay
// window never short-cuts the tag check. Two ways: outside a receive, where the codec gathers the
// bodies into a buffer of its own; and the datapath's way, in a receive (beginReceive/endReceive), where
// it moves them together in the receive buffer. That one mutates the buffer, so each run first copies
// the wire into it, as recvmsg would: subtract memcpy_64k_ns to compare.
const RING = 64;
const wire = Array.from({ length: RING }, () => {
  translateEncode(big);
  const w = new Uint8Array(70000);
  let n = 0;
  for (let s = 0; s < plan.segments; s++) n += plan.copySegment(s, w.subarray(n));
  return { w, n, seg: plan.segSize };
});
const rxBuf = new Uint8Array(70000);
function decoder(inReceive: boolean): () => void {
  let rx: TunnelCodec | undefined;
  let i = 0;
  return () => {
    if (i % RING === 0) {
      rx?.close();
      rx = new TunnelCodec({ selfId: 2, keys: new Map([[1, key]]), keyId: 1, peers: { has: () => true }, maxDatagram: 1472, encrypt, aeadFactory: bestAead });
    }
    const { w, n, seg } = wire[i++ % RING];
    const r = rx as TunnelCodec;
    let ok = false;
    if (inReceive) {
      rxBuf.set(w.subarray(0, n), 0);
      r.beginReceive();
      for (let off = 0; off < n; off += seg) ok = r.decode(rxBuf, off, Math.min(seg, n - off), batch);
      r.endReceive();
    } else {
      for (let off = 0; off < n; off += seg) ok = r.decode(w, off, Math.min(seg, n - off), batch);
    }
    if (!ok) throw new Error('decode');
  };
}
const decCopy = await ns('decode 64 kB, gathered into its own buffer', decoder(false));
const decReceive = await ns('copy 64 kB in + decode in place (the datapath\'s receive)', decoder(true));

const copyBig = await ns('memcpy 64 kB (peer)', () => { scratch.set(big.buf.subarray(0, big.len), 0); });
const copySmall = await ns('memcpy 128 B (peer)', () => { scratch.set(small.buf.subarray(0, small.len), 0); });

console.log(JSON.stringify({
  bench: 'translate', encrypt,
  super_ns: Math.round(superNs), small_ns: Math.round(smallNs),
  super_decode_ns: Math.round(superRt - superNs), small_decode_ns: Math.round(smallRt - smallNs),
  super_gbps: Math.round((big.len * 8 / superNs) * 100) / 100,
  ratio_super_vs_memcpy: Math.round((superNs / copyBig) * 10) / 10,
  ratio_small_vs_memcpy: Math.round((smallNs / copySmall) * 10) / 10,
  decode_copy_ns: Math.round(decCopy), decode_receive_ns: Math.round(decReceive), memcpy_64k_ns: Math.round(copyBig),
}));
