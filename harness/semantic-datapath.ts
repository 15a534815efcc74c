// netstack's datapath driven by the semantic table, for the lab harness (semantic-host.ts): the same
// wiring as netstack/standalone.ts (netstack/tun-datapath.ts), with SemanticTable in place of the
// static table, and the tunnel's RTT probes feeding `closest`.
import type { Datapath } from '../netstack/datapath.ts';
import { openTunDatapath, type TunDatapathConfig } from '../netstack/tun-datapath.ts';
import type { SemanticTable } from '../proxy/semantic-table.ts';

export type SemanticDatapathConfig = TunDatapathConfig;

export function startSemanticDatapath(raw: Record<string, unknown>, table: SemanticTable,
  onRtt: (peer: number, ms: number) => void): { close: () => void; datapath: Datapath } {
  const cfg = raw as unknown as SemanticDatapathConfig;
  const t = openTunDatapath(cfg, {
    table,
    clampMss: false,
    onError: (e) => {
      process.stdout.write(`${JSON.stringify({ level: 'error', msg: 'datapath error', error: String(e) })}\n`);
    },
  });
  const dp = t.datapath;
  dp.onRtt(onRtt);
  const probe = setInterval(() => { for (const p of cfg.peers ?? []) dp.probe(p.id); }, 500);
  for (const p of cfg.peers ?? []) dp.probe(p.id);
  let closed = false;
  return {
    datapath: dp,
    close: () => {
      if (closed) return;
      closed = true;
      clearInterval(probe);
      t.close();
    },
  };
}
