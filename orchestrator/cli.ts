// `canopy`: one command for every tier and for the lab. Each subcommand lives in
// orchestrator/commands/<name>.ts and exports register(program).
import { Command } from 'commander';
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
import { register as registerImage } from './commands/image.ts';

const program = new Command();
program
  .name('canopy')
  .description('Hierarchical edge orchestrator with a semantic overlay network')
  .version('0.1.0');

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
registerImage(program);

await program.parseAsync(process.argv);
