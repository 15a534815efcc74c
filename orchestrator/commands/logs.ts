// `canopy logs <service> [instance]`: an instance's stdout and stderr, read through root (root asks
// the instance's cluster, which asks its worker): the user needs to reach root only, and reads only
// instances they may read.
import type { Command } from 'commander';
import { oneService } from '../client/lookup.ts';
import { openSession, withLogin } from '../client/session.ts';
import { fail } from '../client/terminal.ts';
import { unseen } from '../protocol/instance-logs.ts';

export function register(program: Command): void {
  program
    .command('logs')
    .description("an instance's output (stdout, then stderr)")
    .argument('<service>', 'svc, svc.svcns, full name or id')
    .argument('[instance]', 'instance number (default: every instance)')
    .option('--root <url>', 'root API URL, or root replicas as a comma-separated list (default: CANOPY_ROOT, or the local deployment of `canopy up`)')
    .option('--stream <which>', 'stdout, stderr or both', 'both')
    .option('--bytes <n>', 'at most this many bytes of each stream (the newest)', '65536')
    .option('-f, --follow', 'keep printing new output of one instance (Ctrl-C stops)')
    .action(async (name: string, nArg: string | undefined, o: { root?: string; stream: string; bytes: string; follow?: boolean }) => {
      if (!['stdout', 'stderr', 'both'].includes(o.stream)) fail('logs', new Error(`--stream must be stdout, stderr or both, got ${o.stream}`));
      const n = nArg === undefined ? undefined : Number(nArg);
      if (n !== undefined && (!Number.isInteger(n) || n < 0)) fail('logs', new Error(`instance must be a number ≥ 0, got ${nArg}`));
      const session = openSession({ root: o.root });
      try {
        await withLogin(session, async (c) => {
          const { service } = await oneService(c, name);
          const instances = service.instances.filter((i) => n === undefined || i.instance_n === n);
          if (instances.length === 0) throw new Error(n === undefined ? `${service.name} has no instances` : `${service.name} has no instance ${n}`);
          if (o.follow) {
            if (instances.length > 1) throw new Error(`${service.name} has ${instances.length} instances: name one to follow`);
            const i = instances[0]!;
            if (!i.worker_id) throw new Error(`${service.name}#${i.instance_n} is ${i.state} and on no worker: ${i.reason}`);
            const streams = (o.stream === 'both' ? ['stdout', 'stderr'] : [o.stream]) as ('stdout' | 'stderr')[];
            const seen = new Map<string, string>();
            for (;;) {
              for (const st of streams) {
                const cur = await c.instanceLogs(service.microserviceID, i.instance_n, st, Number(o.bytes));
                const fresh = unseen(seen.get(st) ?? '', cur);
                if (fresh) (st === 'stdout' ? process.stdout : process.stderr).write(fresh);
                seen.set(st, cur);
              }
              await new Promise((r) => setTimeout(r, 1000));
            }
          }
          for (const i of instances) {
            if (instances.length > 1) console.log(`==> ${service.name}#${i.instance_n} (${i.state} on ${i.worker_id ?? 'no worker'}) <==`);
            if (!i.worker_id) throw new Error(`${service.name}#${i.instance_n} is ${i.state} and on no worker: ${i.reason}`);
            if (o.stream !== 'stderr') process.stdout.write(await c.instanceLogs(service.microserviceID, i.instance_n, 'stdout', Number(o.bytes)));
            if (o.stream !== 'stdout') process.stderr.write(await c.instanceLogs(service.microserviceID, i.instance_n, 'stderr', Number(o.bytes)));
          }
        });
      } catch (e) {
        fail('logs', e);
      }
    });
}
