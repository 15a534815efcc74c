// The contract between the packet path (netstack) and the semantic layer (proxy).
//
// The datapath parses each packet once into a PacketMeta (offsets into the borrowed buffer), asks the
// table for a verdict, applies the rewrite it is given (with incremental checksum updates) and sends
// the packet on. The table never touches packet bytes except to read addresses and ports; the
// datapath never decides where a packet goes. Both objects passed in are reused for every packet:
// borrowed, do not retain.

export const Verdict = {
  /** Drop and count (no route, not ours, policy says no). */
  Drop: 0,
  /** Rewrite, then send through the tunnel to Rewrite.peer. */
  Tunnel: 1,
  /** Rewrite, then deliver on this worker (write back into the TUN). */
  Local: 2,
  /** Unknown destination: the table started a route query. The datapath keeps a copy of the packet
   *  in a short bounded queue and offers it again when the table calls the ready listener. */
  Pending: 3,
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

export const Proto = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58 } as const;

/** Where things are in one packet. Filled by netstack's parser; borrowed. */
export interface PacketMeta {
  family: 4 | 6;
  /** L4 protocol number (Proto). */
  proto: number;
  /** Offset of the IP header in the buffer. */
  l3: number;
  /** Offset of the L4 header. */
  l4: number;
  /** Offsets of the source and destination address bytes (4 or 16 bytes). */
  srcOff: number;
  dstOff: number;
  /** TCP/UDP ports; for ICMP echo both carry the echo identifier; 0 otherwise. */
  sport: number;
  dport: number;
}

/** What the table answers. Reused by the caller; the table overwrites the fields it needs. */
export interface Rewrite {
  /** New source address (first 4 bytes for IPv4). Ignored unless rewriteSrc. */
  readonly src: Uint8Array;
  /** New destination address. Ignored unless rewriteDst. */
  readonly dst: Uint8Array;
  rewriteSrc: boolean;
  rewriteDst: boolean;
  /** New TCP/UDP source and destination ports; 0 keeps the port. A caller's source port is changed
   *  when its translated tuple is already taken by another flow (two dials from one port that reach
   *  the same instance), and changed back on the replies. */
  newSport: number;
  newDport: number;
  /** Tunnel verdict: the worker id to send to. */
  peer: number;
}

export function newRewrite(): Rewrite {
  return { src: new Uint8Array(16), dst: new Uint8Array(16), rewriteSrc: false, rewriteDst: false, newSport: 0, newDport: 0, peer: 0 };
}

export interface TranslationTable {
  /** A packet read from the TUN: sent by a local instance to an overlay address. */
  outbound(buf: Uint8Array, m: PacketMeta, out: Rewrite): Verdict;
  /** A packet that arrived through the tunnel from worker `fromPeer`, before it enters the TUN. */
  inbound(buf: Uint8Array, m: PacketMeta, fromPeer: number, out: Rewrite): Verdict;
  /** The datapath registers here to learn that pending destinations may now be resolvable. */
  onReady(listener: () => void): void;
}
