// Shared by the datapath lab test and the tunnel benchmark: worker plumbing (SPEC §5.1) on lab hosts
// — a bridge with the worker subnet, one instance namespace behind a veth, the TUN with the overlay
// routes — and a standalone datapath process with a static table on each worker.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Host, Lab, Namespace } from '../lab/lab.ts';
import type { StandaloneConfig } from '../netstack/standalone.ts';
import type { StaticInstance } from '../netstack/static-table.ts';
import { innerGsoMaxFor, innerMtuFor, maxDatagramFor } from '../netstack/tunnel.ts';

export const TUNNEL_PORT = 50103;
/** MTU inside the overlay: 1500 on the underlay minus IPv6 + UDP + tunnel header + tag (either underlay fits). */
export const OVERLAY_MTU = innerMtuFor(1500, 6);
export const S4 = '10.30.0.10';
export const S6 = 'fdc0:30::10';

export interface OverlayWorker {
  id: number;
  host: Host;
  inst: Namespace;
  nsIp: string;
  nsIp6: string;
  proc: ChildProcess;
}

export interface OverlayOptions {
  offload: boolean;
  encrypt?: boolean;
  /** Prefix for the instance namespaces, unique per overlay in one lab. */
  tag?: string;
  /** Run each datapath loop in a worker thread (CANOPY_DATAPATH_THREAD). */
  thread?: boolean;
  /** Tunnel over the IPv6 underlay (2001:2::/64) instead of IPv4. */
  underlay6?: boolean;
  /** Each datapath's loop pinned to this CPU, the TUN's receive steered to the others (TunDatapathConfig.cpu). */
  cpu?: number;
}

export function instancesFor(ids: number[]): StaticInstance[] {
  return ids.flatMap((i) => [
    { worker: i, nsIp: `10.18.${i}.2`, instanceIp: `10.30.1.${i}` },
    { worker: i, nsIp: `fdc0:18:${i}::2`, instanceIp: `fdc0:30::1:${i}` },
  ]);
}

/** Plumbs each host as a worker (ids 1, 2, …) with service S4/S6 → the instance on the last worker. */
export async function buildOverlay(lab: Lab, hosts: Host[], opts: OverlayOptions): Promise<OverlayWorker[]> {
  const ids = hosts.map((_, i) => i + 1);
  const instances = instancesFor(ids);
  const last = ids[ids.length - 1];
  const services = [
    { ip: S4, instances: instances.filter((x) => x.worker === last && !x.nsIp.includes(':')) },
    { ip: S6, instances: instances.filter((x) => x.worker === last && x.nsIp.includes(':')) },
  ];
  const key = randomBytes(32).toString('hex');
  const under = (h: Host): string => {
    if (!opts.underlay6) return h.ip;
    if (!h.ip6) throw new Error(`host ${h.name} has no IPv6 underlay address`);
    return h.ip6;
  };
  const out: OverlayWorker[] = [];
  for (const [k, host] of hosts.entries()) {
    const id = k + 1;
    const underlay = opts.underlay6 ? 6 : 4;
    const inst = await plumbWorker(lab, host, id, opts.tag ?? 'w', OVERLAY_MTU, innerGsoMaxFor(maxDatagramFor(1500, underlay), underlay));
    const cfg: StandaloneConfig = {
      selfId: id,
      tun: 'canopy0',
      offload: opts.offload,
      listen: { host: under(host), port: TUNNEL_PORT },
      peers: hosts.map((h, j) => ({ id: j + 1, host: under(h), port: TUNNEL_PORT })).filter((p) => p.id !== id),
      keys: { 1: key },
      keyId: 1,
      encrypt: opts.encrypt,
      mtu: OVERLAY_MTU,
      maxDatagram: maxDatagramFor(1500, underlay),
      routes: ['10.16.0.0/12', 'fdc0::/16'],
      cpu: opts.cpu,
      instances,
      services,
    };
    const env = opts.thread ? { ...process.env, CANOPY_DATAPATH_THREAD: '1' } : process.env;
    const proc = host.spawnNode('netstack/standalone.ts', [JSON.stringify(cfg)], { env });
    out.push({ id, host, inst, nsIp: `10.18.${id}.2`, nsIp6: `fdc0:18:${id}::2`, proc });
  }
  for (const w of out) await waitFor(lab, w.proc, '"datapath up"', 15_000);
  return out;
}

/**
 * One worker's instance side: a bridge with the worker subnet (10.18.<id>.0/24, fdc0:18:<id>::/64), one
 * instance namespace behind a veth with its default routes, forwarding and MSS clamping on the host.
 * The tunnel benchmark builds the same for its kernel VXLAN baseline, so both overlays carry traffic
 * between the same kind of endpoints.
 */
/** gsoMax: the veths' gso_max_size (Canopy's net manager sets innerGsoMaxFor; kernel default 64 kB). */
export async function plumbWorker(lab: Lab, host: Host, id: number, tag: string, mtu: number, gsoMax?: number): Promise<Namespace> {
  const br = 'cbr0';
  await host.setForwarding(true);
  await host.execOk(['ip', 'link', 'add', br, 'type', 'bridge']);
  await host.execOk(['ip', 'addr', 'add', `10.18.${id}.1/24`, 'dev', br]);
  await host.execOk(['ip', '-6', 'addr', 'add', `fdc0:18:${id}::1/64`, 'dev', br, 'nodad']);
  await host.execOk(['ip', 'link', 'set', br, 'mtu', String(mtu), 'up']);
  const inst = await lab.addNamespace(`${tag}${id}i1`);
  const gso = gsoMax ? ['gso_max_size', String(gsoMax)] : [];
  await host.execOk(['ip', 'link', 'add', 'vh1', 'mtu', String(mtu), ...gso, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', inst.netns, ...gso]);
  await host.execOk(['ip', 'link', 'set', 'vh1', 'master', br, 'up']);
  await inst.execOk(['ip', 'addr', 'add', `10.18.${id}.2/24`, 'dev', 'eth0']);
  await inst.execOk(['ip', '-6', 'addr', 'add', `fdc0:18:${id}::2/64`, 'dev', 'eth0', 'nodad']);
  await inst.execOk(['ip', 'link', 'set', 'eth0', 'mtu', String(mtu), 'up']);
  await inst.execOk(['ip', 'route', 'add', 'default', 'via', `10.18.${id}.1`]);
  await inst.execOk(['ip', '-6', 'route', 'add', 'default', 'via', `fdc0:18:${id}::1`]);
  // MSS clamping to the route MTU, so that nothing needs fragmenting inside the overlay.
  await host.execOk(['nft', '-f', '-'], {
    input: 'table inet canopy {\n chain mssclamp {\n  type filter hook forward priority mangle;\n  tcp flags syn tcp option maxseg size set rt mtu\n }\n}\n',
  });
  return inst;
}

export async function waitFor(lab: Lab, proc: ChildProcess, needle: string, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const o = lab.outputOf(proc);
    if (o.includes(needle)) return o;
    if (proc.exitCode !== null || Date.now() > deadline) {
      throw new Error(`datapath process: no ${needle} (exit ${proc.exitCode}): ${o.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Asks a datapath process for its counters (SIGUSR1 → a stats log line). */
export async function statsOf(lab: Lab, proc: ChildProcess): Promise<Record<string, number>> {
  const before = lab.outputOf(proc).split('"msg":"stats"').length;
  proc.kill('SIGUSR1');
  const deadline = Date.now() + 5000;
  for (;;) {
    const o = lab.outputOf(proc);
    const parts = o.split('\n').filter((l) => l.includes('"msg":"stats"'));
    if (o.split('"msg":"stats"').length > before && parts.length > 0) {
      return (JSON.parse(parts[parts.length - 1]) as { stats: Record<string, number> }).stats;
    }
    if (Date.now() > deadline) throw new Error('datapath process did not report stats');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Stops the datapath processes (the lab kills anything left at destroy). */
export async function stopOverlay(workers: OverlayWorker[]): Promise<void> {
  await Promise.all(workers.map((w) => new Promise<void>((res) => {
    if (w.proc.exitCode !== null) return res();
    w.proc.once('exit', () => res());
    w.proc.kill('SIGTERM');
    setTimeout(() => { w.proc.kill('SIGKILL'); res(); }, 3000).unref();
  })));
}
