// Addresses as bytes, and a map from an address inside a packet buffer to a value that costs no
// allocation per lookup: IPv4 addresses are their own 32-bit key; IPv6 addresses hash to a 32-bit
// bucket whose (rarely more than one) entries are compared byte by byte.
import { isIPv4, isIPv6 } from 'node:net';

/** "10.30.0.2" → 4 bytes, "fdc0:30::2" → 16 bytes. Throws on anything else. */
export function ipBytes(ip: string): Uint8Array {
  if (isIPv4(ip)) return Uint8Array.from(ip.split('.').map(Number));
  if (!isIPv6(ip)) throw new Error(`not an IP address: ${ip}`);
  // An embedded dotted quad (::ffff:1.2.3.4) becomes two hex words before the split.
  const s = ip.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a: string, b: string, c: string, d: string) =>
    `${((+a << 8) | +b).toString(16)}:${((+c << 8) | +d).toString(16)}`);
  const parse = (p: string | undefined): number[] => (p ? p.split(':').map((x) => parseInt(x, 16)) : []);
  const dbl = s.indexOf('::');
  const h = parse(dbl < 0 ? s : s.slice(0, dbl));
  const r = dbl < 0 ? [] : parse(s.slice(dbl + 2));
  const words = dbl < 0 ? h : [...h, ...new Array<number>(8 - h.length - r.length).fill(0), ...r];
  const out = new Uint8Array(16);
  words.forEach((w, i) => { out[2 * i] = w >> 8; out[2 * i + 1] = w & 0xff; });
  return out;
}

export function ipString(b: Uint8Array, off = 0, family: 4 | 6 = b.length === 4 ? 4 : 6): string {
  if (family === 4) return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
  const w: string[] = [];
  for (let i = 0; i < 8; i++) w.push((((b[off + 2 * i] ?? 0) << 8) | (b[off + 2 * i + 1] ?? 0)).toString(16));
  // Compress the longest run of zero words (RFC 5952) so strings match what node:net produces.
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (w[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && w[j] === '0') j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return w.join(':');
  return `${w.slice(0, best).join(':')}::${w.slice(best + bestLen).join(':')}`;
}

export function readU32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

function hash6(b: Uint8Array, o: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < 16; i += 4) h = Math.imul(h ^ readU32(b, o + i), 0x01000193);
  return h >>> 0;
}

function equal16(a: Uint8Array, ao: number, b: Uint8Array, bo: number): boolean {
  for (let i = 0; i < 16; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}

interface Slot6<T> { addr: Uint8Array; value: T }

export class AddressMap<T> {
  private readonly v4 = new Map<number, T>();
  private readonly v6 = new Map<number, Slot6<T>[]>();
  private count = 0;

  get size(): number { return this.count; }

  /** Lookup of the address at b[off..] (4 or 16 bytes by family). */
  get(b: Uint8Array, off: number, family: 4 | 6): T | undefined {
    if (family === 4) return this.v4.get(readU32(b, off));
    const bucket = this.v6.get(hash6(b, off));
    if (bucket === undefined) return undefined;
    for (let i = 0; i < bucket.length; i++) {
      const s = bucket[i]!;
      if (equal16(s.addr, 0, b, off)) return s.value;
    }
    return undefined;
  }

  getBytes(addr: Uint8Array): T | undefined {
    return this.get(addr, 0, addr.length === 4 ? 4 : 6);
  }

  set(addr: Uint8Array, value: T): void {
    if (addr.length === 4) {
      const k = readU32(addr, 0);
      if (!this.v4.has(k)) this.count++;
      this.v4.set(k, value);
      return;
    }
    const h = hash6(addr, 0);
    let bucket = this.v6.get(h);
    if (!bucket) this.v6.set(h, (bucket = []));
    const s = bucket.find((x) => equal16(x.addr, 0, addr, 0));
    if (s) s.value = value;
    else { bucket.push({ addr: addr.slice(), value }); this.count++; }
  }

  delete(addr: Uint8Array): boolean {
    if (addr.length === 4) {
      const ok = this.v4.delete(readU32(addr, 0));
      if (ok) this.count--;
      return ok;
    }
    const h = hash6(addr, 0);
    const bucket = this.v6.get(h);
    if (!bucket) return false;
    const i = bucket.findIndex((x) => equal16(x.addr, 0, addr, 0));
    if (i < 0) return false;
    bucket.splice(i, 1);
    if (bucket.length === 0) this.v6.delete(h);
    this.count--;
    return true;
  }
}

/** A prefix such as 10.30.0.0/16 or fdc0:30::/32, tested against addresses inside packet buffers. */
export class Prefix {
  readonly family: 4 | 6;
  private readonly bytes: Uint8Array;
  readonly bits: number;

  constructor(cidr: string) {
    const [ip, len] = cidr.split('/');
    this.bytes = ipBytes(ip ?? '');
    this.family = this.bytes.length === 4 ? 4 : 6;
    this.bits = Number(len);
    if (!Number.isInteger(this.bits) || this.bits < 0 || this.bits > this.bytes.length * 8) throw new Error(`bad prefix: ${cidr}`);
  }

  contains(b: Uint8Array, off: number, family: 4 | 6): boolean {
    if (family !== this.family) return false;
    let bits = this.bits;
    for (let i = 0; bits > 0; i++, bits -= 8) {
      const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
      if (((b[off + i]! ^ this.bytes[i]!) & mask) !== 0) return false;
    }
    return true;
  }
}
