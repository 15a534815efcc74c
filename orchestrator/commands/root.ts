// `canopy root --port <p> --data <dir> [--store postgres://…]`: the root orchestrator alone, until
// SIGTERM/SIGINT. Several of them over one PostgreSQL are replicas of one root (SPEC §11).
import type { Command } from 'commander';
import { DEFAULT_PLAN } from '../root/addresses.ts';
import { RootServer } from '../root/server.ts';
import { CLUSTER_SILENCE_MS } from '../root/clusters.ts';
import { portFlag } from './port-flag.ts';
import { readServerTls } from '../protocol/tls.ts';
import { metricsAccessFrom } from '../metrics-access.ts';

export function register(program: Command): void {
  program
    .command('root')
    .description('run the root orchestrator (REST API, scheduling across clusters)')
    .option('--port <port>', 'API port', '10000')
    .option('--host <address>', 'address to bind', '0.0.0.0')
    .option('--data <dir>', 'data directory (SQLite database)', './canopy-root')
    .option('--store <store>', "'sqlite' (in --data) or a postgres://user@host:port/db URL that several root replicas share (env CANOPY_STORE)")
    .option('--admin-password <password>', 'password of user admin on the first start (env CANOPY_ADMIN_PASSWORD)')
    .option('--cluster-key <key>', 'join key clusters register with (env CANOPY_CLUSTER_KEY)')
    .option('--worker-prefix <bits>', 'size of worker subnets (IPv4 prefix length)', '24')
    .option('--service-v4 <cidr>', 'IPv4 service address range', DEFAULT_PLAN.serviceV4)
    .option('--service-v6 <cidr>', 'IPv6 service address range', DEFAULT_PLAN.serviceV6)
    .option('--cluster-silence <ms>', 'a cluster that has not reported for this long is inactive (above the clusters\' --report-interval)', String(CLUSTER_SILENCE_MS))
    .option('--tls-cert <file>', 'serve https with this certificate (PEM; with --tls-key): plain http is then refused')
    .option('--tls-key <file>', 'private key of --tls-cert (PEM)')
    .option('--metrics-token <token>', 'close /metrics: it then answers only Authorization: Bearer <token> (env CANOPY_METRICS_TOKEN; default: open)')
    .option('--close-health', 'close /api/health too: it then answers only the metrics token (env CANOPY_CLOSE_HEALTH=1)')
    .action(async (o: {
      port: string; host: string; data: string; store?: string; adminPassword?: string; clusterKey?: string; workerPrefix: string; serviceV4: string; serviceV6: string;
      clusterSilence: string; tlsCert?: string; tlsKey?: string; metricsToken?: string; closeHealth?: boolean;
    }) => {
      const port = portFlag(o.port, '--port');
      const prefix = Number(o.workerPrefix);
      if (!Number.isInteger(prefix) || prefix < 16 || prefix > 30) throw new Error(`--worker-prefix: must be 16-30, got ${o.workerPrefix}`);
      const clusterSilenceMs = Number(o.clusterSilence);
      if (!Number.isInteger(clusterSilenceMs) || clusterSilenceMs < 1000 || clusterSilenceMs > 86_400_000) {
        throw new Error(`--cluster-silence: must be 1000-86400000 ms, got ${o.clusterSilence}`);
      }
      let tls;
      let metricsAccess;
      try {
        tls = readServerTls(o.tlsCert, o.tlsKey);
        metricsAccess = metricsAccessFrom(o);
      } catch (e) {
        process.stderr.write(`canopy root: ${(e as Error).message}\n`);
        process.exit(1);
      }
      const root = await RootServer.start({
        tls,
        metricsAccess,
        dataDir: o.data,
        store: o.store || process.env.CANOPY_STORE || undefined,
        host: o.host,
        port,
        // An empty variable means unset: never an empty password or key.
        adminPassword: o.adminPassword || process.env.CANOPY_ADMIN_PASSWORD || undefined,
        clusterKey: o.clusterKey || process.env.CANOPY_CLUSTER_KEY || undefined,
        plan: { workerPrefixV4: prefix, serviceV4: o.serviceV4, serviceV6: o.serviceV6 },
        clusterSilenceMs,
      }).catch((err: unknown) => {
        // A bad flag, a database from another plan or one that cannot be reached: one clear line, not a stack trace.
        process.stderr.write(`canopy root: ${(err as Error).message}\n`);
        process.exit(1);
      });
      const stop = () => {
        root.close().then(() => process.exit(0), (err: unknown) => {
          process.stderr.write(`canopy root: stop failed: ${String(err)}\n`);
          process.exit(1);
        });
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
}
