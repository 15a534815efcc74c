// Services this worker knows: their policy addresses and instances, indexed by address for O(1)
// lookups on the packet path, and the two policies that pick an instance for a new flow.
import { AddressMap, ipBytes } from './address-map.ts';
import { routeAddressClash, type InstanceRoute, type ServiceRoute } from './route-messages.ts';

export const AddrKind = { Rr: 0, Closest: 1, Instance: 2 } as const;
export type AddrKind = (typeof AddrKind)[keyof typeof AddrKind];

export class InstanceRecord {
  /** Index in ServiceTable.slots; with gen, what a flow remembers of its instance. */
  slot = -1;
  gen = 0;
  alive = true;
  healthy: boolean;
  readonly ns4: Uint8Array | null;
  readonly ns6: Uint8Array | null;
  readonly ip4: Uint8Array | null;
  readonly ip6: Uint8Array | null;

  constructor(
    readonly service: ServiceRecord | null,
    readonly n: number,
    readonly workerId: string,
    readonly peer: number,
    readonly local: boolean,
    addrs: { ns_ip: string | null; ns_ip_v6: string | null; instance_ip: string | null; instance_ip_v6: string | null },
    healthy = true,
  ) {
    this.healthy = healthy;
    this.ns4 = addrs.ns_ip ? ipBytes(addrs.ns_ip) : null;
    this.ns6 = addrs.ns_ip_v6 ? ipBytes(addrs.ns_ip_v6) : null;
    this.ip4 = addrs.instance_ip ? ipBytes(addrs.instance_ip) : null;
    this.ip6 = addrs.instance_ip_v6 ? ipBytes(addrs.instance_ip_v6) : null;
  }

  ns(family: 4 | 6): Uint8Array | null { return family === 4 ? this.ns4 : this.ns6; }
  ip(family: 4 | 6): Uint8Array | null { return family === 4 ? this.ip4 : this.ip6; }
}

export interface AddressEntry {
  kind: AddrKind;
  service: ServiceRecord;
  /** For AddrKind.Instance: the one instance this address reaches. */
  instance: InstanceRecord | null;
  bytes: Uint8Array;
}

export class ServiceRecord {
  instances: InstanceRecord[] = [];
  rrCursor = 0;
  tieCursor = 0;
  /** Coarse-clock second of the last use, so the route cache is refreshed at most once a second. */
  touched = -1;
  constructor(public route: ServiceRoute) {}
  get id(): string { return this.route.service_id; }
}

/** Estimated RTT in ms from this worker to another (0 for itself, Infinity when unknown). */
export type Distance = (workerId: string) => number;

const TIE_MS = 0.1;

export class ServiceTable {
  readonly byAddress = new AddressMap<AddressEntry>();
  readonly byId = new Map<string, ServiceRecord>();
  readonly byName = new Map<string, ServiceRecord>();
  /** Every live instance record by slot (flows hold slot + gen). */
  readonly slots: (InstanceRecord | undefined)[] = [];
  private readonly freeSlots: number[] = [];
  private readonly gens: number[] = [];

  constructor(
    private readonly selfId: string,
    private readonly peerOf: (workerId: string) => number,
  ) {}

  adopt(inst: InstanceRecord): InstanceRecord {
    const slot = this.freeSlots.pop() ?? this.slots.length;
    inst.slot = slot;
    inst.gen = (this.gens[slot] ?? 0) + 1;
    this.gens[slot] = inst.gen;
    this.slots[slot] = inst;
    return inst;
  }

  retire(inst: InstanceRecord): void {
    if (!inst.alive) return;
    inst.alive = false;
    if (this.slots[inst.slot] === inst) {
      this.slots[inst.slot] = undefined;
      this.freeSlots.push(inst.slot);
    }
  }

  /** Installs or fully replaces a service. Instances whose addresses and worker are unchanged keep their
   *  record, so their flows stay; the others are retired and their flows pick again. */
  apply(route: ServiceRoute): ServiceRecord {
    // Checked before anything changes: a route whose addresses clash is refused whole, and the
    // service keeps the route it had.
    const clash = routeAddressClash(route);
    if (clash) throw clash;
    let svc = this.byId.get(route.service_id);
    if (svc) this.unindex(svc);
    else svc = new ServiceRecord(route);
    svc.route = route;
    const old = new Map(svc.instances.map((i) => [i.n, i]));
    const next: InstanceRecord[] = [];
    for (const r of [...route.instances].sort((a, b) => a.n - b.n)) {
      const prev = old.get(r.n);
      if (prev && sameInstance(prev, r)) {
        prev.healthy = r.healthy;
        old.delete(r.n);
        next.push(prev);
      } else {
        next.push(this.adopt(new InstanceRecord(svc, r.n, r.worker_id, this.peerOf(r.worker_id),
          r.worker_id === this.selfId, r, r.healthy)));
      }
    }
    for (const gone of old.values()) this.retire(gone);
    svc.instances = next;
    this.index(svc);
    return svc;
  }

  /** Removes some instances (or the whole service when `instances` is undefined). */
  withdraw(serviceId: string, instances?: number[]): ServiceRecord | undefined {
    const svc = this.byId.get(serviceId);
    if (!svc) return undefined;
    if (instances === undefined) {
      this.remove(svc);
      return svc;
    }
    const drop = new Set(instances);
    this.apply({ ...svc.route, instances: svc.route.instances.filter((i) => !drop.has(i.n)) });
    return svc;
  }

  remove(svc: ServiceRecord): void {
    if (this.byId.get(svc.id) !== svc) return;
    this.unindex(svc);
    for (const i of svc.instances) this.retire(i);
    svc.instances = [];
  }

  private index(svc: ServiceRecord): void {
    const r = svc.route;
    this.byId.set(svc.id, svc);
    this.byName.set(r.name, svc);
    const put = (ip: string | null, kind: AddrKind, instance: InstanceRecord | null): void => {
      if (!ip) return;
      const bytes = ipBytes(ip);
      this.byAddress.set(bytes, { kind, service: svc, instance, bytes });
    };
    put(r.rr_ip, AddrKind.Rr, null);
    put(r.rr_ip_v6, AddrKind.Rr, null);
    put(r.closest_ip, AddrKind.Closest, null);
    put(r.closest_ip_v6, AddrKind.Closest, null);
    for (const i of svc.instances) {
      const ri = r.instances.find((x) => x.n === i.n);
      put(ri?.instance_ip ?? null, AddrKind.Instance, i);
      put(ri?.instance_ip_v6 ?? null, AddrKind.Instance, i);
    }
  }

  private unindex(svc: ServiceRecord): void {
    const r = svc.route;
    const ips = [r.rr_ip, r.rr_ip_v6, r.closest_ip, r.closest_ip_v6,
      ...r.instances.flatMap((i) => [i.instance_ip, i.instance_ip_v6])];
    for (const ip of ips) {
      if (!ip) continue;
      const b = ipBytes(ip);
      if (this.byAddress.getBytes(b)?.service === svc) this.byAddress.delete(b);
    }
    this.byId.delete(svc.id);
    if (this.byName.get(r.name) === svc) this.byName.delete(r.name);
  }

  /** Round robin over the usable instances, in instance order. */
  pickRr(svc: ServiceRecord, family: 4 | 6): InstanceRecord | null {
    const list = svc.instances, n = list.length;
    const healthyOnly = anyHealthy(list, family);
    for (let k = 0; k < n; k++) {
      const i = list[(svc.rrCursor + k) % n]!;
      if (usable(i, family, healthyOnly)) {
        svc.rrCursor = (svc.rrCursor + k + 1) % n;
        return i;
      }
    }
    return null;
  }

  /** Lowest estimated RTT from this worker; instances within TIE_MS of the best take turns. */
  pickClosest(svc: ServiceRecord, family: 4 | 6, distance: Distance): InstanceRecord | null {
    const list = svc.instances;
    const healthyOnly = anyHealthy(list, family);
    let best = Infinity, any = false;
    for (const i of list) {
      if (!usable(i, family, healthyOnly)) continue;
      any = true;
      const d = distance(i.workerId);
      if (d < best) best = d;
    }
    if (!any) return null;
    let ties = 0;
    for (const i of list) if (usable(i, family, healthyOnly) && isTie(distance(i.workerId), best)) ties++;
    let k = svc.tieCursor++ % ties;
    for (const i of list) {
      if (usable(i, family, healthyOnly) && isTie(distance(i.workerId), best) && k-- === 0) return i;
    }
    return null;
  }
}

/**
 * Pickable for a new flow of this family: with both addresses the translation needs, and healthy
 * unless no instance is. An unhealthy instance (today: one its worker reports overloaded, SPEC §5.3)
 * is still listed in the route, so when every instance is unhealthy the policies pick among all of
 * them rather than drop the flow: a slow answer beats none.
 */
function usable(i: InstanceRecord, family: 4 | 6, healthyOnly: boolean): boolean {
  return (i.healthy || !healthyOnly) && i.ns(family) !== null && i.ip(family) !== null;
}

function anyHealthy(list: readonly InstanceRecord[], family: 4 | 6): boolean {
  for (const i of list) if (usable(i, family, true)) return true;
  return false;
}

function isTie(d: number, best: number): boolean {
  return best === Infinity ? d === Infinity : d - best <= TIE_MS;
}

function sameInstance(rec: InstanceRecord, r: InstanceRoute): boolean {
  const eq = (a: Uint8Array | null, s: string | null): boolean => (a === null ? s === null : s !== null && ipBytes(s).every((x, i) => x === a[i]));
  return rec.workerId === r.worker_id && eq(rec.ns4, r.ns_ip) && eq(rec.ns6, r.ns_ip_v6)
    && eq(rec.ip4, r.instance_ip) && eq(rec.ip6, r.instance_ip_v6);
}
