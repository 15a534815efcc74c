// `canopy`: one command for every tier and for the lab. Each subcommand lives in
// orchestrator/commands/<name>.ts and exports register(program). Only the subcommand being run is
// loaded (all of them for help or an unknown name): a worker daemon does not load root's API,
// SQLite or the cluster's broker, and `canopy status` does not load any daemon (issue 16).
import { Command } from 'commander';
import { pinCa, readCa } from './protocol/tls.ts';

type Registrar = { register(program: Command): void };
const COMMANDS: Record<string, () => Promise<Registrar>> = {
  lab: () => import('./commands/lab.ts'),
  root: () => import('./commands/root.ts'),
  cluster: () => import('./commands/cluster.ts'),
  worker: () => import('./commands/worker.ts'),
  up: () => import('./commands/up.ts'),
  down: () => import('./commands/down.ts'),
  deploy: () => import('./commands/deploy.ts'),
  status: () => import('./commands/status.ts'),
  logs: () => import('./commands/logs.ts'),
  undeploy: () => import('./commands/undeploy.ts'),
  'dns-relay': () => import('./commands/dns-relay.ts'),
  scale: () => import('./commands/scale.ts'),
  image: () => import('./commands/image.ts'),
  certs: () => import('./commands/certs.ts'),
};

const program = new Command();
program
  .name('canopy')
  .description('Hierarchical edge orchestrator with a semantic overlay network')
  .version('0.1.0')
  // One CA per deployment: every https/mqtts connection this process makes trusts it and nothing else.
  .option('--ca <file>', 'CA certificate the control links are verified against (env CANOPY_CA; `canopy up` sets its own)');
program.hook('preAction', () => {
  try {
    pinCa(readCa(program.opts<{ ca?: string }>().ca));
  } catch (e) {
    process.stderr.write(`canopy: ${(e as Error).message}\n`);
    process.exit(1);
  }
});

// The first word that is neither an option nor the value of --ca names the subcommand (`canopy
// --version` has none).
const args = process.argv.slice(2);
const first = args.find((a, i) => !a.startsWith('-') && args[i - 1] !== '--ca');
const names = first !== undefined && Object.hasOwn(COMMANDS, first) ? [first] : Object.keys(COMMANDS);
for (const m of await Promise.all(names.map((n) => COMMANDS[n]!()))) m.register(program);

// A command that fails before it is up (a bad option value, a port in use) says why in one line;
// CANOPY_DEBUG=1 keeps the stack.
await program.parseAsync(process.argv).catch((e: unknown) => {
  const why = e instanceof Error ? (process.env.CANOPY_DEBUG === '1' ? e.stack : e.message) : String(e);
  process.stderr.write(`${first ? `canopy ${first}` : 'canopy'}: ${why}\n`);
  process.exit(1);
});
