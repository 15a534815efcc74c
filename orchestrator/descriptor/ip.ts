// Address parsing and prefix math for the control plane (descriptor checks, root's allocator).
// Values are bigints so IPv4 and IPv6 share one code path; this is never used per packet.
import { Address6 } from 'ip-address';

export type Family = 4 | 6;

export interface Ip {
  family: Family;
  value: bigint;
  /** Canonical text: dotted quad, or RFC 5952 IPv6. */
  text: string;
}

export interface Cidr {
  family: Family;
  /** First address of the block. */
  base: bigint;
  prefix: number;
  /** Number of addresses in the block. */
  size: bigint;
  text: string;
}

const V4_OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const V4_RE = new RegExp(`^${V4_OCTET}\\.${V4_OCTET}\\.${V4_OCTET}\\.${V4_OCTET}$`);

/** Parses one address without prefix or zone; null when it is not one. */
export function parseIp(text: string): Ip | null {
  if (typeof text !== 'string' || text.length > 45) return null;
  if (V4_RE.test(text)) {
    const value = text.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n);
    return { family: 4, value, text };
  }
  if (!text.includes(':') || text.includes('/') || text.includes('%')) return null;
  if (!Address6.isValid(text)) return null;
  const value = new Address6(text).bigInt();
  return { family: 6, value, text: ipToString(6, value) };
}

export function ipToString(family: Family, value: bigint): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 255n)).join('.');
  }
  return Address6.fromBigInt(value).correctForm();
}

/** Parses `addr/prefix`; throws with a reason when it is not a valid block. */
export function parseCidr(text: string): Cidr {
  const [addr, len, ...rest] = text.split('/');
  const ip = addr === undefined ? null : parseIp(addr);
  const bits = ip?.family === 6 ? 128 : 32;
  const prefix = Number(len);
  if (!ip || rest.length > 0 || len === undefined || !/^[0-9]{1,3}$/.test(len) || prefix > bits) {
    throw new Error(`not an address block: ${JSON.stringify(text)}`);
  }
  const hostBits = BigInt(bits - prefix);
  const base = (ip.value >> hostBits) << hostBits;
  return { family: ip.family, base, prefix, size: 1n << hostBits, text: `${ipToString(ip.family, base)}/${prefix}` };
}

export function inCidr(ip: Ip, cidr: Cidr): boolean {
  return ip.family === cidr.family && ip.value >= cidr.base && ip.value < cidr.base + cidr.size;
}

/** The n-th block of `prefix` bits inside `within` (n from 0), or null past its end. */
export function subBlock(within: Cidr, prefix: number, n: bigint): Cidr | null {
  const bits = within.family === 6 ? 128 : 32;
  if (prefix < within.prefix || prefix > bits) throw new Error(`/${prefix} does not fit in ${within.text}`);
  const size = 1n << BigInt(bits - prefix);
  const base = within.base + n * size;
  if (n < 0n || base + size > within.base + within.size) return null;
  return { family: within.family, base, prefix, size, text: `${ipToString(within.family, base)}/${prefix}` };
}
