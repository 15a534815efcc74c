// Emulated hosts of a local deployment: one bridge in the host namespace carrying the underlay
// address of root and cluster, and one network namespace per worker joined to it by a veth. So the
// tunnel between workers crosses a real link, and the CLI on the host reaches root directly.
import { existsSync } from 'node:fs';
import { ipBatch, ipBatchForce, listNetnsSync, run } from './iproute.ts';

export interface HostPlan {
  /** Deployment name, [a-z0-9]{1,6}. */
  name: string;
  /** An IPv4 /24 inside 198.18.0.0/15, given as its network address (x.y.z.0). */
  subnet: string;
  workers: number;
}

export interface PlannedWorker {
  index: number;
  name: string;
  netns: string;
  hostVeth: string;
  ip: string;
}

export interface PlannedHosts {
  bridge: string;
  hostIp: string;
  prefixLen: number;
  workers: PlannedWorker[];
}

export const NAME = /^[a-z0-9]{1,6}$/;
export const MAX_WORKERS = 32;

export function planHosts(p: HostPlan): PlannedHosts {
  if (!NAME.test(p.name)) throw new Error(`deployment name must be 1-6 of a-z 0-9, got "${p.name}"`);
  if (!Number.isInteger(p.workers) || p.workers < 1 || p.workers > MAX_WORKERS) throw new Error(`--workers must be 1-${MAX_WORKERS}, got ${p.workers}`);
  const m = /^198\.(18|19)\.(\d{1,3})\.0$/.exec(p.subnet);
  if (!m || Number(m[2]) > 255) throw new Error(`subnet must be a x.y.z.0 (/24) inside 198.18.0.0/15, got "${p.subnet}"`);
  const base = p.subnet.slice(0, -1);
  const pfx = `cup-${p.name}`;
  return {
    bridge: pfx,
    hostIp: `${base}1`,
    prefixLen: 24,
    workers: Array.from({ length: p.workers }, (_, i) => ({
      index: i + 1,
      name: `${p.name}-w${i + 1}`,
      netns: `${pfx}-w${i + 1}`,
      hostVeth: `${pfx}-w${i + 1}`,
      ip: `${base}${11 + i}`,
    })),
  };
}

function linkExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/** Creates the bridge and the worker namespaces; on failure removes what it made and rethrows. */
export async function createHosts(h: PlannedHosts): Promise<void> {
  const taken = [h.bridge, ...h.workers.map((w) => w.hostVeth)].filter(linkExists);
  const nsTaken = listNetnsSync().filter((n) => h.workers.some((w) => w.netns === n));
  if (taken.length || nsTaken.length) {
    throw new Error(`already exist: ${[...taken, ...nsTaken].join(', ')} (a deployment without its state file? \`canopy down --force\` removes them)`);
  }
  try {
    const lines = [
      `link add ${h.bridge} type bridge`,
      `addr add ${h.hostIp}/${h.prefixLen} dev ${h.bridge}`,
      `link set ${h.bridge} up`,
    ];
    for (const w of h.workers) {
      lines.push(`netns add ${w.netns}`);
      lines.push(`link add ${w.hostVeth} type veth peer name eth0 netns ${w.netns}`);
      lines.push(`link set ${w.hostVeth} master ${h.bridge} up`);
    }
    await ipBatch(lines);
    for (const w of h.workers) {
      await ipBatch([
        'link set lo up',
        `addr add ${w.ip}/${h.prefixLen} dev eth0`,
        'link set eth0 up',
      ], w.netns);
      // The worker forwards between its bridge, its TUN and the underlay.
      await run(['ip', 'netns', 'exec', w.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    }
  } catch (e) {
    removeHosts(h.bridge, h.workers);
    throw e;
  }
}

/** Removes the namespaces and links; whatever is already gone is skipped. Synchronous. */
export function removeHosts(bridge: string, workers: readonly { netns: string; hostVeth: string }[]): void {
  const present = new Set(listNetnsSync());
  const lines: string[] = [];
  for (const w of workers) {
    if (present.has(w.netns)) lines.push(`netns del ${w.netns}`);
    if (linkExists(w.hostVeth)) lines.push(`link del ${w.hostVeth}`);
  }
  if (linkExists(bridge)) lines.push(`link del ${bridge}`);
  ipBatchForce(lines);
}

/** Namespaces and links named like deployment `name`'s (for `down --force` without a state file). */
export function findByName(name: string): { bridge: string; workers: { netns: string; hostVeth: string }[] } {
  const pfx = `cup-${name}`;
  const re = new RegExp(`^${pfx}-w\\d+$`);
  const netns = listNetnsSync().filter((n) => re.test(n));
  return { bridge: pfx, workers: netns.map((n) => ({ netns: n, hostVeth: n })) };
}

/**
 * argv that runs `argv` inside `netns`. Only the network namespace changes (nsenter), not the mount
 * namespace: `ip netns exec` would give the worker a private mount namespace (to mount a fresh
 * sysfs), which hides the host's cgroup mounts from it and, worse, keeps the namespaces it creates
 * for instances (bind mounts under /run/netns) invisible to every other process on the host.
 */
export function netnsExecArgv(netns: string, argv: readonly string[]): string[] {
  return ['nsenter', `--net=/run/netns/${netns}`, '--', ...argv];
}
