// The descriptor's `port` field: `host:container[/tcp|udp]` entries separated by `;`. A bare `80`
// maps host port 80 to container port 80; the protocol defaults to tcp.

export interface PortMapping {
  host: number;
  container: number;
  protocol: 'tcp' | 'udp';
}

const ENTRY = /^([0-9]{1,5})(?::([0-9]{1,5}))?(?:\/(tcp|udp))?$/i;

/** Parses the field; throws an Error whose message says which entry is wrong and why. */
export function parsePorts(field: string): PortMapping[] {
  const out: PortMapping[] = [];
  const seen = new Set<string>();
  const entries = field.trim() === '' ? [] : field.split(';');
  entries.forEach((raw, i) => {
    const entry = raw.trim();
    // A trailing `;` is common in hand-written descriptors; an empty entry elsewhere is a mistake.
    if (entry === '' && i === entries.length - 1 && i > 0) return;
    const m = ENTRY.exec(entry);
    if (!m) throw new Error(`entry ${i + 1} ${JSON.stringify(raw)} is not host[:container][/tcp|udp]`);
    const host = Number(m[1]);
    const container = m[2] === undefined ? host : Number(m[2]);
    for (const [what, p] of [['host', host], ['container', container]] as const) {
      if (p < 1 || p > 65535) throw new Error(`entry ${i + 1}: ${what} port ${p} is outside 1-65535`);
    }
    const protocol = (m[3]?.toLowerCase() ?? 'tcp') as 'tcp' | 'udp';
    const key = `${host}/${protocol}`;
    if (seen.has(key)) throw new Error(`entry ${i + 1}: host port ${key} is mapped twice`);
    seen.add(key);
    out.push({ host, container, protocol });
  });
  return out;
}

export function formatPorts(ports: PortMapping[]): string {
  return ports.map((p) => `${p.host}:${p.container}/${p.protocol}`).join(';');
}
