// A fixed TranslationTable implementing Oakestra's translation model with a small flow map: for tests,
// benchmarks and the lab. The semantic layer (proxy/) replaces it with policies and route queries.
//
// Outbound (a local instance A dials service IP S): pick an instance B for the flow (round robin on a
// new flow, then sticky), rewrite dst S → B's namespace address and src A_ns → A's instance IP, and
// remember the reverse flow so that B's replies get src rewritten back to S on the way in.
import { isIP } from 'node:net';
import { Verdict, type PacketMeta, type Rewrite, type TranslationTable } from './table.ts';

export interface StaticInstance {
  worker: number;
  /** Namespace address on its worker's subnet. */
  nsIp: string;
  /** Stable instance IP in the service range (reachable like a one-instance service). */
  instanceIp: string;
}

export interface StaticService {
  /** A service IP (a policy address) and the instances behind it; all of one address family. */
  ip: string;
  instances: StaticInstance[];
}

export interface StaticTableOptions {
  selfId: number;
  instances: StaticInstance[];
  services: StaticService[];
  /** Bound on remembered flows; the oldest are forgotten first. */
  maxFlows?: number;
}

interface Target {
  inst: StaticInstance;
  ns: Uint8Array;
  iip: Uint8Array;
}

interface Svc {
  addr: Uint8Array;
  targets: Target[];
  next: number;
}

export function parseAddr(s: string): Uint8Array {
  const fam = isIP(s);
  if (fam === 4) return Uint8Array.from(s.split('.').map(Number));
  if (fam !== 6) throw new Error(`not an IP address: ${s}`);
  const out = new Uint8Array(16);
  const [head, tail] = s.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const words = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  words.forEach((w, i) => {
    const v = parseInt(w, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}

function keyOf(b: Uint8Array, off: number, len: number): string {
  let s = '';
  for (let i = 0; i < len; i += 2) s += String.fromCharCode((b[off + i] << 8) | b[off + i + 1]);
  return s;
}

export class StaticTable implements TranslationTable {
  private readonly selfId: number;
  private readonly services = new Map<string, Svc>();
  /** Namespace address → instance IP, for instances on this worker. */
  private readonly localByNs = new Map<string, Uint8Array>();
  /** Forward flow → chosen target. */
  private readonly flows = new Map<string, Target>();
  /** Reverse flow (as the reply arrives) → the service address the caller dialled. */
  private readonly reverse = new Map<string, Uint8Array>();
  private readonly maxFlows: number;
  private readonly listeners: Array<() => void> = [];
  newFlows = 0;

  constructor(opts: StaticTableOptions) {
    this.selfId = opts.selfId;
    this.maxFlows = opts.maxFlows ?? 65536;
    const target = (i: StaticInstance): Target => {
      const ns = parseAddr(i.nsIp);
      const iip = parseAddr(i.instanceIp);
      if (ns.length !== iip.length) throw new Error(`instance ${i.instanceIp}: namespace address ${i.nsIp} is of another family`);
      return { inst: i, ns, iip };
    };
    for (const i of opts.instances) {
      const t = target(i);
      if (i.worker === opts.selfId) this.localByNs.set(keyOf(t.ns, 0, t.ns.length), t.iip);
      // Every instance IP is a one-instance service.
      this.services.set(keyOf(t.iip, 0, t.iip.length), { addr: t.iip, targets: [t], next: 0 });
    }
    for (const s of opts.services) {
      const addr = parseAddr(s.ip);
      const targets = s.instances.map(target);
      for (const t of targets) {
        if (t.ns.length !== addr.length) throw new Error(`service ${s.ip}: instance ${t.inst.instanceIp} is of another family`);
      }
      this.services.set(keyOf(addr, 0, addr.length), { addr, targets, next: 0 });
    }
  }

  private flowKey(buf: Uint8Array, m: PacketMeta, a: number, b: number, pa: number, pb: number): string {
    const alen = m.family === 4 ? 4 : 16;
    return String.fromCharCode(m.proto, pa, pb) + keyOf(buf, a, alen) + keyOf(buf, b, alen);
  }

  outbound(buf: Uint8Array, m: PacketMeta, out: Rewrite): Verdict {
    const alen = m.family === 4 ? 4 : 16;
    const myIip = this.localByNs.get(keyOf(buf, m.srcOff, alen));
    if (!myIip || myIip.length !== alen) return Verdict.Drop;
    const fk = this.flowKey(buf, m, m.srcOff, m.dstOff, m.sport, m.dport);
    let t = this.flows.get(fk);
    if (!t) {
      const svc = this.services.get(keyOf(buf, m.dstOff, alen));
      if (!svc || svc.targets.length === 0 || svc.addr.length !== alen) return Verdict.Drop;
      t = svc.targets[svc.next++ % svc.targets.length];
      this.remember(this.flows, fk, t);
      // The reply will come from t's instance IP to my namespace address, ports swapped.
      const rk = String.fromCharCode(m.proto, m.dport, m.sport) + keyOf(t.iip, 0, alen) + keyOf(buf, m.srcOff, alen);
      this.remember(this.reverse, rk, svc.addr);
      this.newFlows++;
    }
    out.rewriteDst = true;
    out.newSport = 0;
    out.newDport = 0;
    out.dst.set(t.ns, 0);
    out.rewriteSrc = true;
    out.src.set(myIip, 0);
    out.peer = t.inst.worker;
    return t.inst.worker === this.selfId ? Verdict.Local : Verdict.Tunnel;
  }

  inbound(buf: Uint8Array, m: PacketMeta, _fromPeer: number, out: Rewrite): Verdict {
    const alen = m.family === 4 ? 4 : 16;
    // Only instances on this worker are delivered to; a peer cannot aim elsewhere.
    if (!this.localByNs.has(keyOf(buf, m.dstOff, alen))) return Verdict.Drop;
    out.rewriteDst = false;
    out.newSport = 0;
    out.newDport = 0;
    const svcAddr = this.reverse.get(this.flowKey(buf, m, m.srcOff, m.dstOff, m.sport, m.dport));
    out.rewriteSrc = svcAddr !== undefined;
    if (svcAddr) out.src.set(svcAddr, 0);
    out.peer = this.selfId;
    return Verdict.Local;
  }

  onReady(listener: () => void): void {
    this.listeners.push(listener);
  }

  private remember<V>(map: Map<string, V>, k: string, v: V): void {
    if (map.size >= this.maxFlows) {
      const oldest = map.keys().next();
      if (!oldest.done) map.delete(oldest.value);
    }
    map.set(k, v);
  }

  get flowCount(): number {
    return this.flows.size;
  }
}
