// `canopy up [--workers N] [--demo|--no-demo]`: root, one cluster and N workers on this machine, each
// worker in its own network namespace on a bridge (orchestrator/deployment/local.ts), then the demo.
import type { Command } from 'commander';
import { RootClient } from '../client/root-client.ts';
import { fail } from '../client/terminal.ts';
import { runDemo } from '../deployment/demo.ts';
import { AlreadyUpError, down, up } from '../deployment/local.ts';
import { cliCommand } from '../deployment/processes.ts';
import { defaultStateDir, readState } from '../client/deployment-state.ts';
import { portFlag } from './port-flag.ts';
import { parseUpstream } from '../../dns/forwarder.ts';

interface Opts {
  workers: string;
  roots: string;
  store: string;
  postgresPort: string;
  demo?: boolean;
  dir?: string;
  name: string;
  subnet: string;
  rootPort: string;
  clusterPort: string;
  mqttPort: string;
  workerApiPort: string;
  dnsRelayPort: string;
  dnsUpstream?: string[];
  workerArg: string[];
  registryMirror: string[];
  imageCacheMb?: string;
  tls: boolean;
  registryMirrorsOnly?: boolean;
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

function parseStore(v: string): 'sqlite' | 'postgres' {
  if (v === 'sqlite' || v === 'postgres') return v;
  return fail('up', new Error(`--store: sqlite or postgres, got ${JSON.stringify(v)}`));
}

export function register(program: Command): void {
  program
    .command('up')
    .description('bring up root, a cluster and workers (each in its own network namespace) on this machine, then run the demo')
    .option('--workers <n>', 'number of workers', '2')
    .option('--roots <n>', 'root replicas (more than 1 needs --store postgres); they share one store and fail over', '1')
    .option('--store <store>', "root's store: sqlite, or postgres (Debian's PostgreSQL, started in the state directory)", 'sqlite')
    .option('--postgres-port <port>', 'port of that PostgreSQL on 127.0.0.1', '10432')
    .option('--demo', 'deploy the demo application and show the client reaching the server by name (default)')
    .option('--no-demo', 'skip the demo')
    .option('--dir <dir>', 'state directory (env CANOPY_UP_DIR; default /var/lib/canopy/up)')
    .option('--name <name>', 'deployment name: prefix of its namespaces and links (1-6 of a-z 0-9)', 'up')
    .option('--subnet <x.y.z.0>', 'underlay /24 inside 198.18.0.0/15', '198.19.250.0')
    .option('--root-port <port>', 'root API port', '10000')
    .option('--cluster-port <port>', 'cluster API port', '10100')
    .option('--mqtt-port <port>', 'cluster MQTT port', '10003')
    .option('--worker-api-port <port>', "workers' local API port", '10200')
    .option('--dns-relay-port <port>', "port of the workers' DNS relay on the bridge address", '10053')
    .option('--dns-upstream <address...>', 'resolvers the relay asks for outside names (default: nameservers in /etc/resolv.conf)')
    .option('--no-tls', 'plain HTTP and MQTT on the control links (default: TLS with a CA made for the deployment)')
    .option('--worker-arg <arg>', 'extra argument for every `canopy worker` (repeatable)', collect, [])
    .option('--registry-mirror <host=url>', 'registry mirror for every worker\'s container pulls, e.g. docker.io=http://10.0.0.5:5000 (repeatable)', collect, [])
    .option('--image-cache-mb <mb>', 'each worker\'s container image disk limit (`canopy worker --image-cache-mb`)')
    .option('--registry-mirrors-only', 'workers pull only through --registry-mirror (and loopback registries), never from a registry\'s own address')
    .action(async (o: Opts) => {
      if (process.getuid?.() !== 0) fail('up', new Error('needs root (network namespaces, bridge, cgroups)'));
      const dir = o.dir ?? defaultStateDir();
      try {
        for (const u of o.dnsUpstream ?? []) parseUpstream(u);
      } catch (e) {
        fail('up', new Error(`--dns-upstream: ${(e as Error).message}`));
      }
      const say = (l: string) => console.log(l);
      // Interrupted while coming up: undo what was made, so the next `up` starts clean. Not once it
      // is up (the demo may be interrupted), nor when another deployment is recorded there.
      const interrupted = (): void => {
        console.log('\ninterrupted: removing what was made so far');
        try {
          const s = readState(dir);
          if (s) down(s);
        } finally {
          process.exit(130);
        }
      };
      if (readState(dir) === null) process.once('SIGINT', interrupted);
      let state;
      try {
        state = await up({
          dir, workers: Number(o.workers), name: o.name, subnet: o.subnet,
          roots: Number(o.roots), store: parseStore(o.store), postgresPort: portFlag(o.postgresPort, '--postgres-port', 1),
          rootPort: portFlag(o.rootPort, '--root-port', 1), clusterPort: portFlag(o.clusterPort, '--cluster-port', 1),
          mqttPort: portFlag(o.mqttPort, '--mqtt-port', 1), workerApiPort: portFlag(o.workerApiPort, '--worker-api-port', 1),
          dnsRelayPort: portFlag(o.dnsRelayPort, '--dns-relay-port', 1), dnsUpstreams: o.dnsUpstream, tls: o.tls,
          workerArgs: [...o.workerArg, ...o.registryMirror.flatMap((m) => ['--registry-mirror', m]), ...(o.registryMirrorsOnly ? ['--registry-mirrors-only'] : []),
            ...(o.imageCacheMb !== undefined ? ['--image-cache-mb', o.imageCacheMb] : [])], progress: say,
        });
      } catch (e) {
        if (e instanceof AlreadyUpError) {
          console.log(e.message);
          process.exit(0);
        }
        process.stderr.write(`canopy up: ${(e as Error).message}\ncanopy up: \`canopy down${o.dir ? ` --dir ${o.dir}` : ''}\` removes what was made so far (logs in ${dir}/logs)\n`);
        process.exit(1);
      }
      process.removeListener('SIGINT', interrupted);
      console.log(`\nup: root ${state.rootUrl} (user ${state.username}, password in ${dir}/state.json), cluster ${state.clusterName}, workers ${state.workers.map((w) => w.name).join(', ')}`);
      console.log(`logs: ${dir}/logs`);
      if (state.ca) console.log(`tls: every link is TLS; clients trust ${state.ca} (the CLI reads it from the state file; curl --cacert ${state.ca})`);
      let demoFailed = false;
      if (o.demo !== false) {
        console.log('');
        try {
          const c = new RootClient({ url: state.rootUrl });
          await c.login(state.username, state.password);
          const r = await runDemo(c, state, say);
          if (r.lines.length) {
            console.log("client's log (HTTP status of each request to http://closest.web/):");
            for (const l of r.lines) console.log(`  ${l}`);
          }
          console.log(r.ok ? `demo OK: ${r.why}` : `demo FAILED: ${r.why}`);
          demoFailed = !r.ok;
        } catch (e) {
          console.log(`demo FAILED: ${(e as Error).message}`);
          demoFailed = true;
        }
      }
      const env = o.dir ? `CANOPY_UP_DIR=${o.dir} ` : '';
      const cli = cliCommand();
      const hint = (cmd: string, what: string): string => `  ${env}${cli} ${cmd.padEnd(28)} ${what}`;
      console.log(['', 'what to try next:',
        hint('status', 'instances, states, workers, addresses'),
        hint('logs client', "the client's output (logs web: the server's)"),
        hint('deploy <sla.json> --wait', 'deploy your own descriptor'),
        hint('undeploy webapp', 'remove the demo'),
        hint('down', 'stop everything and remove its namespaces'),
      ].join('\n'));
      process.exit(demoFailed ? 2 : 0);
    });
}
