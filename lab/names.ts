// Names of everything a lab creates. Every name carries the lab's per-run prefix so that the sweeper
// can recognise leftovers of a killed run, and interface names stay within the kernel's 15 bytes.
import { randomBytes } from 'node:crypto';

/** `cl` + 4 hex digits: short enough that `<prefix>-<host>` stays readable in `ip netns list`. */
export const PREFIX_RE = /^cl[0-9a-f]{4}$/;
/** A namespace name made by some lab: the prefix, then `-` (hosts, extra namespaces) or `_sw`. */
export const LAB_NETNS_RE = /^(cl[0-9a-f]{4})[-_]/;

const HOST_RE = /^[a-z0-9][a-z0-9-]{0,15}$/;

/** A fresh prefix that `taken` does not report as in use (retries on the rare collision). */
export function newPrefix(taken: (prefix: string) => boolean, random: () => Buffer = () => randomBytes(2)): string {
  for (let i = 0; i < 64; i++) {
    const p = `cl${random().toString('hex').slice(0, 4).padStart(4, '0')}`;
    if (!taken(p)) return p;
  }
  throw new Error('lab: no free prefix after 64 tries (too many labs left behind? run the sweeper)');
}

/** Throws a clear error unless `name` can name a host or an extra namespace. */
export function checkHostName(name: string): void {
  if (!HOST_RE.test(name)) {
    throw new Error(`lab: bad host name ${JSON.stringify(name)}: want 1-16 of [a-z0-9-], starting with a letter or digit`);
  }
}

export function hostNetns(prefix: string, host: string): string {
  return `${prefix}-${host}`;
}

/** The switch namespace; `_` cannot occur in host names, so it never collides with a host. */
export function switchNetns(prefix: string): string {
  return `${prefix}_sw`;
}

/** Switch-side port of host number `index` (0-based): a veth end or the relay's bridge-side TAP. */
export function switchPort(index: number): string {
  return `p${index + 1}`;
}

/** The relay's host-side TAP while it still lives in the switch namespace (renamed eth0 once moved). */
export function relayHostTap(index: number): string {
  return `h${index + 1}`;
}

/** The prefix of a namespace name made by a lab, or null when the name is not one of ours. */
export function prefixOfNetns(netns: string): string | null {
  const m = LAB_NETNS_RE.exec(netns);
  return m ? m[1]! : null;
}

/** Default underlay addresses: host number `index` (0-based) gets 198.18.0.<index+1>/24 and 2001:2::<index+1>/64. */
export function hostAddress(index: number): { ip: string; ip6: string } {
  if (index < 0 || index > 252) throw new Error(`lab: host index ${index} out of range (at most 253 hosts)`);
  return { ip: `198.18.0.${index + 1}`, ip6: `2001:2::${(index + 1).toString(16)}` };
}
