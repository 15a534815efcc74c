// netstack's datapath driven by the semantic table, for the lab harness (semantic-host.ts): the same
// process layout as netstack/standalone.ts, with SemanticTable in place of the static table, and the
// tunnel's RTT probes feeding `closest`.
import { execFileSync } from 'node:child_process';
import { TunDevice } from '../../native/tun.ts';
import { UdpSocket } from '../../native/udp.ts';
import { Readiness } from '../../native/poll.ts';
import { Datapath } from '../../netstack/datapath.ts';
import { TunnelCodec } from '../../netstack/tunnel.ts';
import type { Endpoint } from '../../netstack/io.ts';
import type { StandaloneConfig } from '../../netstack/standalone.ts';
import type { SemanticTable } from '../../proxy/semantic-table.ts';

export type SemanticDatapathConfig = Omit<StandaloneConfig, 'instances' | 'services'>;

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function startSemanticDatapath(raw: Record<string, unknown>, table: SemanticTable,
  onRtt: (peer: number, ms: number) => void): { close: () => void; datapath: Datapath } {
  const cfg = raw as unknown as SemanticDatapathConfig;
  const keys = new Map<number, Uint8Array>();
  for (const [id, hex] of Object.entries(cfg.keys)) keys.set(Number(id), Buffer.from(hex, 'hex'));
  const peers = new Map<number, Endpoint>();
  for (const p of cfg.peers) peers.set(p.id, { host: p.host, port: p.port });
  const dev = new TunDevice(cfg.tun, { offload: cfg.offload });
  let sock: UdpSocket;
  try {
    ip(['link', 'set', 'dev', dev.name, 'mtu', String(cfg.mtu), 'txqueuelen', String(cfg.txqueuelen ?? 10000), 'up']);
    for (const r of cfg.routes) ip([r.includes(':') ? '-6' : '-4', 'route', 'replace', r, 'dev', dev.name]);
    sock = new UdpSocket({ host: cfg.listen.host, port: cfg.listen.port, offload: cfg.offload });
  } catch (e) {
    dev.close();
    throw e;
  }
  const dp = new Datapath({
    device: dev, socket: sock, table,
    codec: new TunnelCodec({
      selfId: cfg.selfId, keys, keyId: cfg.keyId, isPeer: (id) => peers.has(id), maxDatagram: cfg.maxDatagram,
      encrypt: cfg.encrypt, aead: cfg.aead,
    }),
    endpointOf: (id) => peers.get(id),
  });
  const pump = (f: () => number) => (): void => {
    try { f(); } catch (e) {
      process.stdout.write(`${JSON.stringify({ level: 'error', msg: 'datapath error', error: String(e) })}\n`);
    }
  };
  const rDev = new Readiness(dev.fd, pump(() => dp.pumpDevice()));
  const rSock = new Readiness(sock.fd, pump(() => dp.pumpSocket()));
  dp.onRtt(onRtt);
  const probe = setInterval(() => { for (const p of cfg.peers) dp.probe(p.id); }, 500);
  for (const p of cfg.peers) dp.probe(p.id);
  let closed = false;
  return {
    datapath: dp,
    close: () => {
      if (closed) return;
      closed = true;
      clearInterval(probe);
      rDev.close();
      rSock.close();
      dp.close();
    },
  };
}
