// `canopy lab up|down|status`: emulated hosts for poking at a topology by hand.
import type { Command } from 'commander';

export function register(program: Command): void {
  program.command('lab').description('emulated hosts in network namespaces (not implemented yet)');
}
