// Semantic checks and normalization of a descriptor that already has the right shape (schema.ts).
// Each problem is pushed as {path, message}; the returned value is only meaningful when none was.
import { nameProblem } from '../names.ts';
import { inCidr, parseIp, type Cidr, type Family } from './ip.ts';
import { parseLocation } from './location.ts';
import { formatPorts, parsePorts } from './ports.ts';
import type {
  Application, Connectivity, Constraint, Descriptor, FieldError, Microservice, PinnedAddresses, Virtualization,
} from './types.ts';

export interface ValidationContext {
  /** Pinned service addresses must lie in these blocks. */
  serviceRangeV4: Cidr;
  serviceRangeV6: Cidr;
  /** 'empty': applicationID must be "" (a new application); 'set': it must name one (checked by the caller). */
  applicationIds?: 'empty' | 'set';
  /** Whether a (canonical) address is already held by another service or instance. */
  addressTaken?(ip: string): boolean;
  /** Whether a service id exists and may be referenced by this user (connectivity targets). */
  serviceExists?(id: string): boolean;
  /**
   * The service a PUT edits: its microserviceID may be given. Every other microserviceID must be
   * empty, since root assigns ids (an id naming another service would be silently ignored).
   */
  editingServiceId?: string;
  /** Names of the services an existing application already has (descriptors that extend it). */
  existingServiceNames?(applicationID: string): string[];
}

export const ARCHITECTURES = ['amd64', 'arm64', 'arm', '386', 'riscv64', 'ppc64le', 's390x'] as const;
const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', aarch64: 'arm64', armv7: 'arm', i386: '386' };

const LIMITS = { memory: 1 << 20, vcpus: 1024, vgpus: 64, vtpus: 64, storage: 1e9, bandwidth_in: 1e9, bandwidth_out: 1e9 };
const ENV = /^[A-Za-z_][A-Za-z0-9_]*=/;
const IMAGE = /^[^\s]+$/;
const CONSTRAINT_KEYS: Record<Constraint['type'], string[]> = {
  direct: ['cluster', 'node'],
  clusters: ['allowed'],
  geo: ['location', 'threshold'],
  latency: ['target', 'area', 'location', 'threshold'],
  anti_affinity: [],
  arch: ['arch'],
};

type Obj = Record<string, unknown>;

function name(value: unknown, path: string, errors: FieldError[]): string {
  const problem = nameProblem(value);
  if (problem) errors.push({ path, message: `${problem} (names are ^[a-z0-9]{1,30}$, case-insensitive)` });
  return typeof value === 'string' ? value.toLowerCase() : '';
}

/** A number or numeric string (the schema checked its spelling) as a number within [0, max]. */
function quantity(value: unknown, path: string, max: number, errors: FieldError[]): number {
  if (value === undefined) return 0;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isFinite(n) || n < 0) errors.push({ path, message: `${path.split('/').pop()} must be a non-negative number` });
  else if (n > max) errors.push({ path, message: `must be at most ${max} (got ${n})` });
  return n;
}

function positive(value: unknown, path: string, errors: FieldError[]): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  if (!Number.isFinite(n) || n <= 0) errors.push({ path, message: 'must be a positive number' });
  return n;
}

function stringList(value: unknown, path: string, errors: FieldError[], what: string): string[] {
  if (!Array.isArray(value) || value.length === 0) {
    errors.push({ path, message: `must be a non-empty list of ${what}` });
    return [];
  }
  value.forEach((v, i) => {
    if (typeof v !== 'string' || v.trim() === '' || v.length > 64) errors.push({ path: `${path}/${i}`, message: `must be a ${what.replace(/s$/, '')}` });
  });
  return value.filter((v): v is string => typeof v === 'string');
}

function constraint(c: Obj, path: string, errors: FieldError[]): Constraint | null {
  const type = c.type as Constraint['type'];
  for (const key of Object.keys(c)) {
    if (key !== 'type' && !CONSTRAINT_KEYS[type].includes(key)) {
      errors.push({ path: `${path}/${key}`, message: `is not a field of a ${type} constraint (fields: ${CONSTRAINT_KEYS[type].join(', ') || 'none'})` });
    }
  }
  switch (type) {
    case 'direct': {
      if (c.cluster === undefined && c.node === undefined) {
        errors.push({ path, message: 'a direct constraint needs `cluster` and/or `node`' });
        return null;
      }
      const out: Constraint = { type };
      if (c.cluster !== undefined) {
        if (typeof c.cluster !== 'string' || c.cluster.trim() === '' || c.cluster.length > 64) {
          errors.push({ path: `${path}/cluster`, message: 'must be a cluster name' });
        } else out.cluster = c.cluster;
      }
      if (c.node !== undefined) {
        const nodes = typeof c.node === 'string' ? c.node.split(';').map((s) => s.trim()) : [];
        if (nodes.length === 0 || nodes.some((n) => n === '' || n.length > 253) || (c.node as string).length > 4096) {
          errors.push({ path: `${path}/node`, message: 'must be "host1;host2;…" (non-empty host names)' });
        } else out.node = nodes.join(';');
      }
      return out;
    }
    case 'clusters':
      return { type, allowed: stringList(c.allowed, `${path}/allowed`, errors, 'cluster names') };
    case 'geo': {
      const location = typeof c.location === 'string' ? c.location : '';
      if (!parseLocation(location, false)) errors.push({ path: `${path}/location`, message: 'must be "lat,long" in degrees' });
      return { type, location, threshold: positive(c.threshold, `${path}/threshold`, errors) };
    }
    case 'latency': {
      const out: Constraint = { type, threshold: positive(c.threshold, `${path}/threshold`, errors) };
      if (c.location === undefined && c.area === undefined && c.target === undefined) {
        errors.push({ path, message: 'a latency constraint needs `target` (an address), `area` or `location`' });
      }
      if (c.target !== undefined) {
        // The workers probe it: a unicast address, not a name (nothing here resolves names for them).
        if (typeof c.target !== 'string' || !parseIp(c.target)) {
          errors.push({ path: `${path}/target`, message: 'must be an IPv4 or IPv6 address' });
        } else out.target = c.target;
      }
      if (c.location !== undefined) {
        if (typeof c.location !== 'string' || !parseLocation(c.location, false)) {
          errors.push({ path: `${path}/location`, message: 'must be "lat,long" in degrees' });
        } else out.location = c.location;
      }
      if (c.area !== undefined) {
        if (typeof c.area !== 'string' || c.area.trim() === '' || c.area.length > 128) {
          errors.push({ path: `${path}/area`, message: 'must be an area name' });
        } else out.area = c.area;
      }
      return out;
    }
    case 'anti_affinity':
      return { type };
    case 'arch': {
      const list = stringList(c.arch, `${path}/arch`, errors, 'architectures');
      const arch = list.map((a, i) => {
        const norm = ARCH_ALIASES[a.toLowerCase()] ?? a.toLowerCase();
        if (!(ARCHITECTURES as readonly string[]).includes(norm)) {
          errors.push({ path: `${path}/arch/${i}`, message: `unknown architecture ${JSON.stringify(a)} (known: ${ARCHITECTURES.join(', ')})` });
        }
        return norm;
      });
      return { type, arch: [...new Set(arch)] };
    }
  }
}

const ADDRESS_FAMILY: Record<keyof PinnedAddresses, Family> = { rr_ip: 4, closest_ip: 4, rr_ip_v6: 6, closest_ip_v6: 6 };

function addresses(a: Obj | undefined, path: string, ctx: ValidationContext, errors: FieldError[], pinned: Map<string, string>): PinnedAddresses {
  const out: PinnedAddresses = {};
  for (const key of Object.keys(a ?? {}) as (keyof PinnedAddresses)[]) {
    const raw = a?.[key];
    if (typeof raw !== 'string' || raw === '') continue;
    const p = `${path}/${key}`;
    const family = ADDRESS_FAMILY[key];
    const ip = parseIp(raw);
    const range = family === 4 ? ctx.serviceRangeV4 : ctx.serviceRangeV6;
    if (!ip || ip.family !== family) {
      errors.push({ path: p, message: `must be an IPv${family} address` });
    } else if (!inCidr(ip, range) || ip.value === range.base || ip.value === range.base + range.size - 1n) {
      errors.push({ path: p, message: `${ip.text} is outside the service range ${range.text} (or is its first or last address)` });
    } else if (pinned.has(ip.text)) {
      errors.push({ path: p, message: `${ip.text} is pinned twice in this descriptor (also at ${pinned.get(ip.text)})` });
    } else if (ctx.addressTaken?.(ip.text)) {
      errors.push({ path: p, message: `${ip.text} is already taken by another service` });
    } else {
      pinned.set(ip.text, p);
      out[key] = ip.text;
    }
  }
  return out;
}

export function normalizeMicroservice(
  m: Obj, path: string, ctx: ValidationContext, errors: FieldError[], pinned: Map<string, string>, siblings: string[],
): Microservice {
  const virtualization = m.virtualization as Virtualization;
  const code = typeof m.code === 'string' ? m.code.trim() : '';
  const cmd = (m.cmd as string[] | undefined) ?? [];
  if (virtualization === 'container' && (code === '' || !IMAGE.test(code))) {
    errors.push({ path: `${path}/code`, message: 'a container service needs `code`: an image reference without spaces' });
  }
  if (virtualization === 'process' && (cmd.length === 0 || cmd[0]?.trim() === '')) {
    errors.push({ path: `${path}/cmd`, message: 'a process service needs `cmd`: the command line to run' });
  }
  const environment = (m.environment as string[] | undefined) ?? [];
  environment.forEach((e, i) => {
    if (!ENV.test(e)) errors.push({ path: `${path}/environment/${i}`, message: 'must be "NAME=value" with NAME of letters, digits and _' });
  });
  let port = '';
  if (m.port !== undefined) {
    try {
      port = formatPorts(parsePorts(String(m.port)));
    } catch (err) {
      errors.push({ path: `${path}/port`, message: `${(err as Error).message}; expected "host:container[/tcp|udp];…"` });
    }
  }
  const num = (k: keyof typeof LIMITS) => quantity(m[k], `${path}/${k}`, LIMITS[k], errors);
  const constraints: Constraint[] = [];
  ((m.constraints as Obj[] | undefined) ?? []).forEach((c, i) => {
    const out = constraint(c, `${path}/constraints/${i}`, errors);
    if (out) constraints.push(out);
  });
  const selfName = typeof m.microservice_name === 'string' ? m.microservice_name.toLowerCase() : '';
  const connectivity: Connectivity[] = ((m.connectivity as Obj[] | undefined) ?? []).map((c, i) => {
    const target = String(c.target_microservice_id);
    const p = `${path}/connectivity/${i}/target_microservice_id`;
    const sibling = siblings.includes(target.toLowerCase());
    if (target.toLowerCase() === selfName) errors.push({ path: p, message: 'a service cannot be its own connectivity target' });
    else if (!sibling && !ctx.serviceExists?.(target)) {
      errors.push({ path: p, message: `no service ${JSON.stringify(target)}: use an existing service id or the name of a microservice of this application` });
    }
    const con = (c.con_constraints as Obj[]).map((cc, j) => ({
      type: cc.type as 'latency' | 'geo',
      threshold: positive(cc.threshold, `${path}/connectivity/${i}/con_constraints/${j}/threshold`, errors),
    }));
    return { target_microservice_id: sibling ? target.toLowerCase() : target, con_constraints: con };
  });
  const microserviceID = typeof m.microserviceID === 'string' ? m.microserviceID : '';
  if (microserviceID !== '' && microserviceID !== ctx.editingServiceId) {
    errors.push({
      path: `${path}/microserviceID`,
      message: ctx.editingServiceId === undefined
        ? `must be empty for a new service (root assigns ids), got ${JSON.stringify(microserviceID)}`
        : `must be empty or this service's id ${ctx.editingServiceId}, got ${JSON.stringify(microserviceID)}`,
    });
  }
  return {
    microserviceID,
    microservice_name: name(m.microservice_name, `${path}/microservice_name`, errors),
    microservice_namespace: name(m.microservice_namespace, `${path}/microservice_namespace`, errors),
    virtualization,
    code,
    cmd,
    args: (m.args as string[] | undefined) ?? [],
    environment,
    memory: num('memory'),
    vcpus: num('vcpus'),
    vgpus: num('vgpus'),
    vtpus: num('vtpus'),
    storage: num('storage'),
    bandwidth_in: num('bandwidth_in'),
    bandwidth_out: num('bandwidth_out'),
    port,
    one_shot: m.one_shot === true,
    addresses: addresses(m.addresses as Obj | undefined, `${path}/addresses`, ctx, errors, pinned),
    constraints,
    connectivity,
  };
}

export function normalizeDescriptor(d: Obj, ctx: ValidationContext, errors: FieldError[]): Descriptor {
  const pinned = new Map<string, string>();
  const appKeys = new Map<string, number>();
  const applications: Application[] = (d.applications as Obj[]).map((a, i) => {
    const path = `/applications/${i}`;
    const applicationID = typeof a.applicationID === 'string' ? a.applicationID : '';
    if (ctx.applicationIds === 'empty' && applicationID !== '') {
      errors.push({ path: `${path}/applicationID`, message: 'must be empty for a new application (ids are assigned by root)' });
    }
    if (ctx.applicationIds === 'set' && applicationID === '') {
      errors.push({ path: `${path}/applicationID`, message: 'must name the application to add services to' });
    }
    const appName = name(a.application_name, `${path}/application_name`, errors);
    const appNs = name(a.application_namespace, `${path}/application_namespace`, errors);
    const key = `${appName}.${appNs}`;
    if (appKeys.has(key)) {
      errors.push({ path: `${path}/application_name`, message: `application ${key} appears twice (also /applications/${appKeys.get(key)})` });
    }
    appKeys.set(key, i);
    const raw = a.microservices as Obj[];
    const siblings = [
      ...raw.map((m) => String(m.microservice_name).toLowerCase()),
      ...(applicationID ? (ctx.existingServiceNames?.(applicationID) ?? []) : []),
    ];
    const svcKeys = new Map<string, number>();
    const microservices = raw.map((m, j) => {
      const ms = normalizeMicroservice(m, `${path}/microservices/${j}`, ctx, errors, pinned, siblings);
      const svcKey = `${ms.microservice_name}.${ms.microservice_namespace}`;
      if (svcKeys.has(svcKey)) {
        errors.push({ path: `${path}/microservices/${j}/microservice_name`, message: `service ${svcKey} appears twice in this application (also microservices/${svcKeys.get(svcKey)})` });
      }
      svcKeys.set(svcKey, j);
      return ms;
    });
    return {
      applicationID,
      application_name: appName,
      application_namespace: appNs,
      application_desc: typeof a.application_desc === 'string' ? a.application_desc : '',
      microservices,
    };
  });
  return { sla_version: 'v2.0', customerID: typeof d.customerID === 'string' ? d.customerID : '', applications };
}
