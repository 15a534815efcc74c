// The tunnel peers of one worker, keyed by tunnel id (the sender id in every tunnel header): the one
// place that knows which worker a tunnel id is and where its socket is. The codec admits senders by
// it, the datapath sends to it, the semantic layer maps a route's worker to its id through it, and
// RTT probes go to its ids. Nebula's host map plays this part.
//
// Two sources fill it: the cluster's peer list (the admitted workers; each list replaces the last)
// and service routes (an instance's worker, id and endpoint, which may name a worker of another
// cluster the list has not shown yet). An admitted entry wins over a routed one for the same id.
import type { Endpoint } from '../native/io.ts';

export interface TunnelPeer {
  /** Tunnel sender id. */
  readonly id: number;
  readonly workerId: string;
  /** One long-lived object per peer: sockets cache the encoded address per Endpoint object. */
  readonly endpoint: Endpoint;
}

/** What the packet path reads: the codec `has`, the datapath `endpoint`. */
export interface PeerLookup {
  /** True for a sender whose datagrams are accepted. */
  has(id: number): boolean;
  /** Where a peer's tunnel socket is; undefined for an unknown peer. */
  endpoint(id: number): Endpoint | undefined;
}

export class PeerTable implements PeerLookup {
  private readonly admitted = new Map<number, TunnelPeer>();
  private readonly routed = new Map<number, TunnelPeer>();
  /** admitted over routed: what lookups read, rebuilt on every change (changes are rare). */
  private readonly merged = new Map<number, TunnelPeer>();
  /** Worker → id, from either source; kept when a worker leaves the list (routes may still name it). */
  private readonly ids = new Map<string, number>();

  constructor(peers: Iterable<TunnelPeer> = []) {
    this.admit(peers);
  }

  /** The cluster's peer list: replaces the admitted peers. */
  admit(peers: Iterable<TunnelPeer>): void {
    this.admitted.clear();
    for (const p of peers) {
      this.admitted.set(p.id, p);
      this.ids.set(p.workerId, p.id);
    }
    this.rebuild();
  }

  /** A worker named by a route: its id, and its endpoint when the route has one. */
  learn(workerId: string, id: number, endpoint: Endpoint | undefined): void {
    this.ids.set(workerId, id);
    if (!endpoint) return;
    const had = this.routed.get(id);
    if (had && had.workerId === workerId && had.endpoint.host === endpoint.host && had.endpoint.port === endpoint.port) return;
    this.routed.set(id, { id, workerId, endpoint });
    this.rebuild();
  }

  has(id: number): boolean {
    return this.merged.has(id);
  }

  endpoint(id: number): Endpoint | undefined {
    return this.merged.get(id)?.endpoint;
  }

  get(id: number): TunnelPeer | undefined {
    return this.merged.get(id);
  }

  /** The tunnel id of a worker, when either source has named it. */
  idOf(workerId: string): number | undefined {
    return this.ids.get(workerId);
  }

  /** Ids of every peer with an endpoint. */
  peerIds(): IterableIterator<number> {
    return this.merged.keys();
  }

  get size(): number {
    return this.merged.size;
  }

  private rebuild(): void {
    this.merged.clear();
    for (const [id, p] of this.routed) this.merged.set(id, p);
    for (const [id, p] of this.admitted) this.merged.set(id, p);
  }
}
