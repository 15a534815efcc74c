// One emulated worker's semantic layer as its own process, for lab tests and benchmarks: the semantic
// table fed by an in-memory route source (standing in for the cluster), the service DNS server, and,
// when configured, netstack's datapath with the semantic table in place of its static one.
//
//   node --import tsx test/integration/semantic-host.ts '<json config>'     (see HostConfig)
//
// Prints {"msg":"ready"} on stdout when serving. Reads JSON lines on stdin, one command each:
//   {"cmd":"withdraw","service_id":"s1","instances":[0]}   {"cmd":"update","route":{…}}
//   {"cmd":"stats"}                                        (answers {"msg":"stats",…} on stdout)
// SIGTERM closes everything.
import { createInterface } from 'node:readline';
import { SemanticTable, type LocalInstance } from '../proxy/semantic-table.ts';
import { StaticRouteSource } from '../proxy/static-route-source.ts';
import { MeasuredRtt, StaticRtt, type RttSource } from '../proxy/rtt.ts';
import { parseServiceRoute, type ServiceRoute } from '../proxy/route-messages.ts';
import { ServiceDnsServer } from '../dns/server.ts';
import { parseUpstream } from '../dns/forwarder.ts';

export interface HostConfig {
  workerId: string;
  /** Tunnel peer number of each worker id (what Rewrite.peer carries). */
  peerIds: Record<string, number>;
  routes: ServiceRoute[];
  locals: LocalInstance[];
  /** Fixed RTTs in ms; when absent, the datapath's probes measure them. */
  rtt?: Record<string, number>;
  answerDelayMs?: number;
  dns?: { listen: { address: string; port?: number }[]; upstreams: string[]; batched?: boolean };
  /** netstack/standalone.ts's config (its static instances/services are ignored). */
  datapath?: Record<string, unknown>;
}

function log(fields: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ ts: new Date().toISOString(), component: 'semantic-host', ...fields })}\n`);
}

async function main(cfg: HostConfig): Promise<void> {
  const routes = cfg.routes.map((r, i) => parseServiceRoute(r, `routes[${i}]`));
  const source = new StaticRouteSource(routes, { answerDelayMs: cfg.answerDelayMs ?? 0 });
  const probe = new MeasuredRtt();
  const rtt: RttSource = cfg.rtt ? new StaticRtt(cfg.rtt) : probe;
  const table = new SemanticTable({
    workerId: cfg.workerId, link: source.link(cfg.workerId), rtt,
    peerOf: (w) => {
      const p = cfg.peerIds[w];
      if (p === undefined) throw new Error(`no peer id for worker ${w}`);
      return p;
    },
    log: (r) => log(r),
  });
  for (const l of cfg.locals) table.addLocalInstance(l);
  const closers: (() => void)[] = [() => table.close(), () => source.close()];
  let datapathStats = (): Record<string, number> => ({});
  let dnsMetrics = (): string => '';

  if (cfg.dns) {
    const dns = new ServiceDnsServer({
      listen: cfg.dns.listen, resolver: table, upstreams: cfg.dns.upstreams.map(parseUpstream), log: (r) => log(r),
      batched: cfg.dns.batched,
    });
    await dns.start();
    closers.push(() => dns.close());
    dnsMetrics = () => dns.metrics();
  }

  if (cfg.datapath) {
    // Loaded only when asked: the datapath needs root and a TUN.
    const { startSemanticDatapath } = await import('./semantic-datapath.ts');
    const dp = startSemanticDatapath(cfg.datapath, table, (peer, ms) => {
      const w = Object.entries(cfg.peerIds).find(([, p]) => p === peer)?.[0];
      if (w) probe.record(w, ms);
    });
    datapathStats = () => dp.datapath.stats();
    closers.push(() => dp.close());
  }

  const close = (): void => {
    for (const c of closers.reverse()) {
      try { c(); } catch { /* closing anyway */ }
    }
  };
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => { close(); process.exit(0); });

  createInterface({ input: process.stdin }).on('line', (line) => {
    try {
      const c = JSON.parse(line) as { cmd?: string; seq?: number; service_id?: string; instances?: number[]; route?: unknown };
      if (c.cmd === 'withdraw' && c.service_id) source.withdraw(c.service_id, c.instances);
      else if (c.cmd === 'update') source.update(parseServiceRoute(c.route));
      else if (c.cmd === 'stats') {
        const rtt = Object.fromEntries(Object.keys(cfg.peerIds).map((w) => [w, table.estimator.estimate(w)]));
        log({ msg: 'stats', table: table.stats, flows: table.flows.size, rtt, datapath: datapathStats(), dns: dnsMetrics() });
      }
      else throw new Error('unknown command');
      log({ msg: 'done', cmd: c.cmd, seq: c.seq });
    } catch (err) {
      log({ level: 'warn', msg: 'bad command', line, error: String(err) });
    }
  });
  log({ msg: 'ready', workerId: cfg.workerId });
}

const raw = process.argv[2];
if (!raw) {
  process.stderr.write('usage: semantic-host.ts <json config>\n');
  process.exit(2);
}
main(JSON.parse(raw) as HostConfig).catch((err: unknown) => {
  log({ level: 'error', msg: 'semantic host failed', error: String(err) });
  process.exit(1);
});
