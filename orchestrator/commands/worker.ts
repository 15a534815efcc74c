// `canopy worker …`: one worker daemon (node engine; the net manager is wired in later) until
// SIGTERM/SIGINT. Instances keep running when it stops; the next start re-adopts them.
import type { Command } from 'commander';
import { hostname } from 'node:os';
import { NodeEngine } from '../worker/node-engine.ts';
import { startWorkerApi } from '../worker/api.ts';

interface Opts {
  name: string;
  cluster: string;
  key?: string;
  data: string;
  location?: string;
  apiHost: string;
  apiPort: string;
  tunnelEndpoint?: string;
  vcpus?: string;
  memory?: string;
  undeployOnExit?: boolean;
}

export function register(program: Command): void {
  program
    .command('worker')
    .description('run a worker daemon (node engine) that joins a cluster')
    .option('--name <name>', 'worker name, unique in the cluster', hostname().toLowerCase().replace(/[^a-z0-9-]/g, '-'))
    .requiredOption('--cluster <url>', 'cluster API URL, e.g. http://cluster:10100')
    .option('--key <key>', 'the cluster\'s worker join key (env CANOPY_WORKER_KEY)')
    .option('--data <dir>', 'state directory (credentials, instance records, logs)', './canopy-worker')
    .option('--location <lat,long>', 'where this worker is (for geo constraints)')
    .option('--api-host <address>', 'local API address', '127.0.0.1')
    .option('--api-port <port>', 'local API port (status, logs, metrics); 0 picks one', '10200')
    .option('--tunnel-endpoint <host:port>', 'tunnel socket address other workers reach')
    .option('--vcpus <n>', 'CPUs to offer (default: all)')
    .option('--memory <mb>', 'memory to offer in MB (default: all)')
    .option('--undeploy-on-exit', 'remove every instance when stopping')
    .action(async (o: Opts) => {
      const key = o.key ?? process.env.CANOPY_WORKER_KEY;
      if (!key) throw new Error('--key or CANOPY_WORKER_KEY is required (printed by `canopy cluster` at first start)');
      let capacity;
      if (o.vcpus !== undefined || o.memory !== undefined) {
        const vcpus = Number(o.vcpus ?? 0);
        const memory_mb = Number(o.memory ?? 0);
        if (!(vcpus > 0) || !(memory_mb > 0)) throw new Error('--vcpus and --memory must both be positive numbers');
        capacity = { vcpus, memory_mb };
      }
      const engine = await NodeEngine.start({
        name: o.name, clusterUrl: o.cluster, joinKey: key, stateDir: o.data, location: o.location,
        tunnelEndpoint: o.tunnelEndpoint, capacity,
      });
      const api = await startWorkerApi(engine, o.apiHost, Number(o.apiPort));
      const stop = (): void => {
        Promise.all([api.close(), engine.close({ undeploy: Boolean(o.undeployOnExit) })]).then(() => process.exit(0), (err: unknown) => {
          process.stderr.write(`canopy worker: stop failed: ${String(err)}\n`);
          process.exit(1);
        });
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
}
