// What a lab link may be told to do, and which frames a relay applies it to.
//
// Semantics follow netem: an impairment on a host's link applies to every frame in each direction
// (leaving and entering the host); a pair rule "A–B delay 20 ms" delays A→B by 20 ms and B→A by 20 ms
// (RTT +40 ms). A pair rule is carried out entirely by A's relay: on egress it matches frames by their
// destination IP (B's), on ingress by their source IP. ARP and NDP are never matched by pair rules.

export interface Impairment {
  /** One-way delay added in each direction, ms. */
  delayMs?: number;
  /** Uniform jitter ± this many ms around delayMs (frames may reorder, as with netem). */
  jitterMs?: number;
  /** Random loss in each direction, percent (0–100). */
  lossPct?: number;
  /** Token-bucket rate in each direction, Mbit/s. */
  rateMbit?: number;
}

/**
 * Which way an impairment acts. For a host's link: 'out' = frames leaving the host, 'in' = frames
 * entering it. For a pair: 'out' = a→b only, 'in' = b→a only. Default 'both'.
 */
export type Direction = 'both' | 'out' | 'in';

export interface HostLinkSpec extends Impairment {
  host: string;
  direction?: Direction;
}

export interface PairLinkSpec extends Impairment {
  a: string;
  b: string;
  direction?: Direction;
}

export type LinkSpec = HostLinkSpec | PairLinkSpec;

export function isPair(l: LinkSpec): l is PairLinkSpec {
  return 'a' in l && 'b' in l;
}

/** Throws a clear error when an impairment is out of range; `where` names it in the message. */
export function checkImpairment(i: Impairment, where: string): void {
  const bad = (field: string, why: string): never => {
    throw new Error(`lab: ${where}: ${field} ${why}`);
  };
  const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  if (i.delayMs !== undefined && (!num(i.delayMs) || i.delayMs < 0 || i.delayMs > 60_000)) bad('delayMs', 'must be 0–60000');
  if (i.jitterMs !== undefined && (!num(i.jitterMs) || i.jitterMs < 0 || i.jitterMs > 60_000)) bad('jitterMs', 'must be 0–60000');
  if (i.lossPct !== undefined && (!num(i.lossPct) || i.lossPct < 0 || i.lossPct > 100)) bad('lossPct', 'must be 0–100');
  if (i.rateMbit !== undefined && (!num(i.rateMbit) || i.rateMbit <= 0 || i.rateMbit > 100_000)) bad('rateMbit', 'must be > 0 and ≤ 100000');
  if (isEmpty(i)) bad('impairment', 'is empty: give delayMs, jitterMs, lossPct or rateMbit');
}

export function isEmpty(i: Impairment): boolean {
  return !i.delayMs && !i.jitterMs && !i.lossPct && !i.rateMbit;
}

export function pickImpairment(l: LinkSpec): Impairment {
  const out: Impairment = {};
  if (l.delayMs !== undefined) out.delayMs = l.delayMs;
  if (l.jitterMs !== undefined) out.jitterMs = l.jitterMs;
  if (l.lossPct !== undefined) out.lossPct = l.lossPct;
  if (l.rateMbit !== undefined) out.rateMbit = l.rateMbit;
  return out;
}

export function describeImpairment(i: Impairment): string {
  const parts: string[] = [];
  if (i.delayMs) parts.push(`delay ${i.delayMs}ms`);
  if (i.jitterMs) parts.push(`jitter ±${i.jitterMs}ms`);
  if (i.lossPct) parts.push(`loss ${i.lossPct}%`);
  if (i.rateMbit) parts.push(`rate ${i.rateMbit}Mbit`);
  return parts.join(', ');
}

/** What one relay is told: its host's own link impairment and the pair rules it carries out.
 *  Directions are the relay host's: 'out' = leaving it (egress), 'in' = entering it (ingress). */
export interface RelayConfig {
  link: Impairment | null;
  linkDirection?: Direction;
  pairs: { peer: string; addrs: string[]; impairment: Impairment; direction?: Direction }[];
}

/** Whether an impairment with direction `d` applies on the relay's egress ('out') or ingress ('in'). */
export function appliesTo(d: Direction | undefined, side: 'out' | 'in'): boolean {
  return d === undefined || d === 'both' || d === side;
}

export function checkDirection(d: unknown, where: string): void {
  if (d !== undefined && d !== 'both' && d !== 'out' && d !== 'in') {
    throw new Error(`lab: ${where}: direction must be 'both', 'out' or 'in', got ${JSON.stringify(d)}`);
  }
}

/**
 * Splits a lab's link specs into one RelayConfig per relayed host. A pair is carried by `a` unless
 * only `b` already has a relay (fewer relays = fewer processes). `addrsOf` gives a host's IPs.
 */
export function planRelays(
  links: readonly LinkSpec[], addrsOf: (host: string) => string[],
): Map<string, RelayConfig> {
  const plan = new Map<string, RelayConfig>();
  const get = (h: string): RelayConfig => {
    let c = plan.get(h);
    if (!c) plan.set(h, c = { link: null, pairs: [] });
    return c;
  };
  for (const l of links) {
    if (isPair(l)) continue;
    const c = get(l.host);
    if (c.link) throw new Error(`lab: host ${l.host} has two link impairments; merge them into one`);
    c.link = pickImpairment(l);
    if (l.direction && l.direction !== 'both') c.linkDirection = l.direction;
  }
  const seen = new Set<string>();
  for (const l of links) {
    if (!isPair(l)) continue;
    if (l.a === l.b) throw new Error(`lab: pair ${l.a}–${l.b} joins a host to itself`);
    const key = [l.a, l.b].sort().join('~');
    if (seen.has(key)) throw new Error(`lab: pair ${l.a}–${l.b} given twice; merge the two`);
    seen.add(key);
    const swapped = !plan.has(l.a) && plan.has(l.b);
    const [carrier, peer] = swapped ? [l.b, l.a] : [l.a, l.b];
    const rule: RelayConfig['pairs'][number] = { peer, addrs: addrsOf(peer), impairment: pickImpairment(l) };
    // a→b leaves a but enters b: seen from the carrier, a swapped pair's direction flips.
    if (l.direction && l.direction !== 'both') rule.direction = swapped ? flip(l.direction) : l.direction;
    get(carrier).pairs.push(rule);
  }
  return plan;
}

function flip(d: 'out' | 'in'): 'out' | 'in' {
  return d === 'out' ? 'in' : 'out';
}

/** How a link is listed (status, registry): 'w1', 'w1~w2', with '(out)' / '(in)' when one-way. */
export function linkLabel(l: LinkSpec): string {
  const base = isPair(l) ? `${l.a}~${l.b}` : l.host;
  return l.direction && l.direction !== 'both' ? `${base} (${l.direction})` : base;
}
