// The descriptor's `port` field ("host:container[/tcp|udp];…", SPEC §4) as host port mappings.
// A bare "8080" maps the same port on both sides; the protocol defaults to tcp.

export interface PortMapping {
  host: number;
  container: number;
  proto: 'tcp' | 'udp';
}

export class PortSpecError extends Error {}

function port(text: string, what: string, spec: string): number {
  const n = Number(text);
  if (!/^[0-9]{1,5}$/.test(text) || n < 1 || n > 65535) throw new PortSpecError(`port ${JSON.stringify(spec)}: ${what} port must be 1..65535`);
  return n;
}

export function parsePortMappings(field: string | undefined): PortMapping[] {
  if (field === undefined) return [];
  const out: PortMapping[] = [];
  const seen = new Set<string>();
  for (const raw of field.split(';')) {
    const spec = raw.trim();
    if (spec === '') continue;
    const [ports = '', proto = 'tcp', ...extra] = spec.split('/');
    if (extra.length > 0 || (proto !== 'tcp' && proto !== 'udp')) throw new PortSpecError(`port ${JSON.stringify(spec)}: protocol must be tcp or udp`);
    const [h = '', c, ...more] = ports.split(':');
    if (more.length > 0) throw new PortSpecError(`port ${JSON.stringify(spec)}: expected host:container`);
    const m: PortMapping = { host: port(h, 'host', spec), container: port(c ?? h, 'container', spec), proto };
    const id = `${m.proto}/${m.host}`;
    if (seen.has(id)) throw new PortSpecError(`port ${JSON.stringify(spec)}: host port ${id} mapped twice`);
    seen.add(id);
    out.push(m);
  }
  return out;
}
