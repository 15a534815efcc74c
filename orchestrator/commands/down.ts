// `canopy down`: stops the local deployment of `canopy up` and removes every namespace, link, cgroup
// and directory it made.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { fail } from '../client/terminal.ts';
import { findByName } from '../deployment/hosts.ts';
import { down, forceDown } from '../deployment/local.ts';
import { defaultStateDir, readState } from '../client/deployment-state.ts';

export function register(program: Command): void {
  program
    .command('down')
    .description('stop the local deployment of `canopy up` and remove what it made')
    .option('--dir <dir>', 'state directory (env CANOPY_UP_DIR; default /var/lib/canopy/up)')
    .option('--keep-logs', "keep the daemons' logs in <dir>/logs")
    .option('--force <name>', 'no usable state file: remove the namespaces and links of deployment <name> (e.g. up)')
    .action((o: { dir?: string; keepLogs?: boolean; force?: string }) => {
      if (process.getuid?.() !== 0) fail('down', new Error('needs root (network namespaces, bridge, cgroups)'));
      const dir = o.dir ?? defaultStateDir();
      try {
        if (o.force) {
          const r = forceDown(dir, o.force);
          console.log(`removed what was left of deployment ${r.name}${r.killed.length ? ` (stopped ${r.killed.join(', ')})` : ''}`);
          return;
        }
        const s = readState(dir);
        if (!s) {
          const left = findByName('up');
          const hint = left.workers.length || existsSync(`/sys/class/net/${left.bridge}`) ? `; namespaces of a deployment "up" exist: \`canopy down --force up\` removes them` : '';
          console.log(`nothing is up (no state file in ${dir})${hint}`);
          return;
        }
        const r = down(s, { keepLogs: o.keepLogs });
        const extra = [
          r.killed.length ? `had to kill: ${r.killed.join(', ')}` : '',
          r.leftoverCgroups ? `removed ${r.leftoverCgroups} leftover cgroups` : '',
          r.leftoverNetns.length ? `removed leftover namespaces ${r.leftoverNetns.join(', ')}` : '',
        ].filter(Boolean);
        console.log(`down: deployment ${r.name} stopped, its namespaces and links removed${extra.length ? ` (${extra.join('; ')})` : ''}`);
      } catch (e) {
        fail('down', e);
      }
    });
}
