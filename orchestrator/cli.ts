// `canopy`: one command for every tier and for the lab. Each subcommand lives in
// orchestrator/commands/<name>.ts and exports register(program).
import { Command } from 'commander';
import { pinCa, readCa } from './protocol/tls.ts';
import { register as registerLab } from './commands/lab.ts';
import { register as registerRoot } from './commands/root.ts';
import { register as registerCluster } from './commands/cluster.ts';
import { register as registerWorker } from './commands/worker.ts';
import { register as registerUp } from './commands/up.ts';
import { register as registerDown } from './commands/down.ts';
import { register as registerDeploy } from './commands/deploy.ts';
import { register as registerStatus } from './commands/status.ts';
import { register as registerLogs } from './commands/logs.ts';
import { register as registerUndeploy } from './commands/undeploy.ts';
import { register as registerDnsRelay } from './commands/dns-relay.ts';
import { register as registerScale } from './commands/scale.ts';
import { register as registerCerts } from './commands/certs.ts';

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

registerLab(program);
registerRoot(program);
registerCluster(program);
registerWorker(program);
registerUp(program);
registerDown(program);
registerDeploy(program);
registerStatus(program);
registerLogs(program);
registerUndeploy(program);
registerDnsRelay(program);
registerScale(program);
registerCerts(program);

await program.parseAsync(process.argv);
