// Builds the net manager for a node engine: identity (worker id, tunnel key, subnet), the MQTT route
// link and the runtime's namespace names come from the engine; the subnet may arrive later.
import { lookup } from 'node:dns/promises';
import type { NodeEngine } from '../node-engine.ts';
import { NetManager, type NetManagerOptions } from './net-manager.ts';
import { ip } from './commands.ts';

export type WorkerNetOptions = Omit<NetManagerOptions, 'workerId' | 'stateDir' | 'link' | 'tunnelKey' | 'overlayKey' | 'netnsOf' | 'log'>;

export function netManagerFor(engine: NodeEngine, o: WorkerNetOptions): NetManager {
  const id = engine.identity;
  if (!id.tunnel) {
    throw new Error(`this worker registered with a cluster that handed out no tunnel key; remove ${engine.o.stateDir}/worker.json to register again`);
  }
  const nm = new NetManager({
    ...o, workerId: id.worker_id, stateDir: engine.o.stateDir, link: engine.routeLink(), tunnelKey: id.tunnel,
    ...(id.overlay_tunnel ? { overlayKey: id.overlay_tunnel } : {}),
    netnsOf: (k) => engine.sandbox.netnsName(k), log: engine.log,
  });
  engine.on('overlay-key', (k) => nm.setOverlayKey(k));
  engine.on('tunnel-key', (k) => nm.setClusterKey(k));
  engine.coordinate = () => nm.coordinate();
  if (id.subnet_v4) void nm.setSubnet({ v4: id.subnet_v4, v6: id.subnet_v6 }).catch(() => {});
  engine.on('subnet', (s) => void nm.setSubnet({ v4: s.subnet_v4, v6: s.subnet_v6 ?? null }).catch(() => {}));
  return nm;
}

/** The address other workers reach this one at: the source address of the route towards the cluster. */
export async function defaultTunnelEndpoint(clusterUrl: string, port: number): Promise<string> {
  const host = new URL(clusterUrl).hostname.replace(/^\[|\]$/g, '');
  const { address, family } = await lookup(host);
  const out = await ip(['-j', 'route', 'get', address]);
  const src = (JSON.parse(out) as Array<{ prefsrc?: string }>)[0]?.prefsrc;
  if (!src) throw new Error(`no source address towards the cluster (${address}); give --tunnel-endpoint`);
  return family === 6 ? `[${src}]:${port}` : `${src}:${port}`;
}
