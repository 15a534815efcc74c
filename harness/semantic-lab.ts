// Worker plumbing for semantic-layer lab tests: on an emulated host, a bridge with the worker subnet's
// first address and one veth per instance namespace (default routes via the bridge), the instance's
// resolv.conf, and a semantic-host process. Everything lives in the lab's namespaces (removed with the
// lab) except /etc/netns/<ns>/, which cleanup() removes.
import type { ChildProcess } from 'node:child_process';
import type { Host, Lab, Namespace } from '../lab/lab.ts';
import { writeNetnsResolvConf, removeNetnsResolvConf, type ResolvConfOptions } from '../dns/resolv-conf.ts';
import type { HostConfig } from './semantic-host.ts';

export interface WorkerNet {
  /** 1-based worker number: subnet 10.18.<k>.0/24 and fdc0:18:<k>::/64. */
  k: number;
  bridge4: string;
  bridge6: string;
}

/** MTU inside the overlay: the underlay's 1500 minus IPv6 + UDP + tunnel header, rounded down. */
export const OVERLAY_MTU = 1400;

export async function addBridge(host: Host, k: number): Promise<WorkerNet> {
  const bridge4 = `10.18.${k}.1`, bridge6 = `fdc0:18:${k}::1`;
  await host.execOk(['ip', 'link', 'add', 'br0', 'mtu', String(OVERLAY_MTU), 'type', 'bridge']);
  await host.execOk(['ip', 'addr', 'add', `${bridge4}/24`, 'dev', 'br0']);
  await host.execOk(['ip', '-6', 'addr', 'add', `${bridge6}/64`, 'dev', 'br0', 'nodad']);
  await host.execOk(['ip', 'link', 'set', 'br0', 'up']);
  await host.setForwarding(true);
  // MSS clamped to the route MTU, so that nothing needs fragmenting inside the overlay.
  await host.execOk(['nft', '-f', '-'], {
    input: 'table inet canopy {\n chain mssclamp {\n  type filter hook forward priority mangle;\n  tcp flags syn tcp option maxseg size set rt mtu\n }\n}\n',
  });
  return { k, bridge4, bridge6 };
}

/** An instance namespace with address 10.18.<k>.<n> / fdc0:18:<k>::<n> on the host's bridge. */
export async function addInstance(lab: Lab, host: Host, net: WorkerNet, name: string, n: number): Promise<Namespace> {
  const ns = await lab.addNamespace(name);
  const hv = `v${name}`.slice(0, 15);
  await host.execOk(['ip', 'link', 'add', hv, 'mtu', String(OVERLAY_MTU), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.netns]);
  await host.execOk(['ip', 'link', 'set', hv, 'master', 'br0', 'up']);
  await ns.execOk(['ip', 'addr', 'add', `10.18.${net.k}.${n}/24`, 'dev', 'eth0']);
  await ns.execOk(['ip', '-6', 'addr', 'add', `fdc0:18:${net.k}::${n}/64`, 'dev', 'eth0', 'nodad']);
  await ns.execOk(['ip', 'link', 'set', 'eth0', 'up']);
  await ns.execOk(['ip', 'route', 'add', 'default', 'via', net.bridge4]);
  await ns.execOk(['ip', '-6', 'route', 'add', 'default', 'via', net.bridge6]);
  return ns;
}

const written = new Set<string>();

export async function resolvConfFor(ns: Namespace, o: ResolvConfOptions): Promise<void> {
  written.add(ns.netns);
  await writeNetnsResolvConf(ns.netns, o);
}

export async function cleanupResolvConfs(): Promise<void> {
  for (const n of written) await removeNetnsResolvConf(n);
  written.clear();
}

export interface HostStats {
  table: Record<string, number>;
  flows: number;
  rtt: Record<string, number | null>;
  datapath: Record<string, number>;
  /** The service DNS's Prometheus text ('' without DNS). */
  dns: string;
}

export interface RunningHost {
  proc: ChildProcess;
  send(cmd: Record<string, unknown>): Promise<void>;
  stats(): Promise<HostStats>;
  /** Every JSON line the host printed so far. */
  lines(): string[];
}

/** Starts semantic-host.ts on `host` and waits for its ready line. */
export async function startSemanticHost(lab: Lab, host: Host, cfg: HostConfig, timeoutMs = 20_000): Promise<RunningHost> {
  const proc = host.spawnNode('harness/semantic-host.ts', [JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let buf = '';
  const waiters: ((line: string) => void)[] = [];
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      for (const w of waiters.splice(0)) w(line);
    }
  });
  const waitFor = (pred: (l: string) => boolean, what: string): Promise<void> => new Promise((resolve, reject) => {
    if (lines.some(pred)) { resolve(); return; }
    const t = setTimeout(() => reject(new Error(`${host.name}: no ${what} within ${timeoutMs} ms; output:\n${lab.outputOf(proc)}${lines.join('\n')}`)), timeoutMs);
    const check = (l: string): void => {
      if (pred(l)) { clearTimeout(t); resolve(); } else waiters.push(check);
    };
    waiters.push(check);
    proc.once('exit', (code) => { clearTimeout(t); reject(new Error(`${host.name}: semantic host exited (${code}):\n${lines.join('\n')}\n${lab.outputOf(proc)}`)); });
  });
  await waitFor((l) => l.includes('"msg":"ready"'), 'ready line');
  let seq = 0;
  const send = async (cmd: Record<string, unknown>): Promise<void> => {
    const s = ++seq;
    proc.stdin!.write(`${JSON.stringify({ ...cmd, seq: s })}\n`);
    await waitFor((l) => l.includes('"msg":"done"') && l.includes(`"seq":${s}}`), `answer to ${String(cmd.cmd)}`);
  };
  return {
    proc,
    send,
    stats: async () => {
      await send({ cmd: 'stats' });
      const line = lines.filter((l) => l.includes('"msg":"stats"')).at(-1)!;
      return JSON.parse(line) as HostStats;
    },
    lines: () => lines.slice(),
  };
}
