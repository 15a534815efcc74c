// `canopy`: one command for every tier and for the lab. Each subcommand lives in
// orchestrator/commands/<name>.ts and exports register(program).
import { Command } from 'commander';
import { register as registerLab } from './commands/lab.ts';
import { register as registerRoot } from './commands/root.ts';
import { register as registerCluster } from './commands/cluster.ts';
import { register as registerWorker } from './commands/worker.ts';

const program = new Command();
program
  .name('canopy')
  .description('Hierarchical edge orchestrator with a semantic overlay network')
  .version('0.1.0');

registerLab(program);
registerRoot(program);
registerCluster(program);
registerWorker(program);

await program.parseAsync(process.argv);
